"""Small Kafka helpers for integration tests (real broker, no fakes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

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


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
