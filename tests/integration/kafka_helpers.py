"""Small Kafka helpers for integration tests (real broker, no fakes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from schemas.partitioning import murmur2_partition  # noqa: F401 (re-exported for the tests)
from streams.replay import read_topic
from streams.source import SourceRecord


class SyncProducer:
    """Produces and returns (partition, offset) of each record once acked."""

    def __init__(self, bootstrap: str) -> None:
        self._p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                            "linger.ms": 2, "partitioner": "murmur2_random"})
        self._results: dict[int, Any] = {}
        self._n = 0

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> int:
        ref = self._n
        self._n += 1

        def done(err: Any, msg: Any) -> None:
            self._results[ref] = err or (msg.partition(), msg.offset())

        self._p.produce(topic, key=key, value=value, on_delivery=done)
        self._p.poll(0)
        return ref

    def flush(self) -> dict[int, tuple[int, int]]:
        assert self._p.flush(30) == 0, "records still unacknowledged after 30s"
        errors = {r: e for r, e in self._results.items() if not isinstance(e, tuple)}
        assert not errors, errors
        return dict(self._results)


def all_records(bootstrap: str, topic: str) -> list[SourceRecord]:
    return list(read_topic(bootstrap, topic))


def wait_until_serving(base_url: str, timeout: float = 30, what: str = "kuailv serve") -> None:
    """Until ``GET {base_url}/healthz`` answers 200 (a ``kuailv serve`` the test started)."""
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:  # refused while it starts (URLError and ConnectionError are OSErrors)
            return False

    wait_for(up, timeout, f"{what} at {base_url}", interval=0.2)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")




def private_topics(bootstrap: str, tag: str, specs: Any) -> dict[str, str]:
    """Fresh copies of contract topics for one test (``KUAILV_TOPIC_RENAMES`` maps them), so a worker
    with a new consumer group does not first fold every earlier test's history."""
    import dataclasses

    from infra.topics import ensure_topics

    # Not compacted: a test reads every change, and with months-old event-time timestamps the broker
    # would roll and compact segments within seconds.
    copies = [dataclasses.replace(spec, name=f"{spec.name}.it-{tag}",
                                  config={**spec.config, "cleanup.policy": "delete", "retention.ms": "-1"})
              for spec in specs]
    problems = [p for r in ensure_topics(bootstrap, copies) for p in r.problems()]
    assert not problems, problems
    _wait_for_leaders(bootstrap, [c.name for c in copies])
    return {spec.name: copy.name for spec, copy in zip(specs, copies, strict=True)}


def _wait_for_leaders(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    """New topics answer NOT_LEADER_FOR_PARTITION until their partitions have a leader."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ready() -> bool:
        topics = admin.list_topics(timeout=10).topics
        return all(n in topics and topics[n].error is None and topics[n].partitions and
                   all(p.leader >= 0 and p.error is None for p in topics[n].partitions.values()) for n in names)

    wait_for(ready, timeout, f"leaders for {names}", interval=0.1)


def delete_topics(bootstrap: str, names: Any) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it referenced until the futures are done
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        future.result(30)


def renames_env(renames: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in renames.items())
