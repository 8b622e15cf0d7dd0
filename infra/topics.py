"""Create the topics of ``schemas.topics.ALL_TOPICS``, idempotently.

Auto-creation is off on our broker, so every topic must exist, with the
partition count of the contract, before a producer or worker starts.
An existing topic is never altered: fewer partitions than the contract is an
error (keys would map to different partitions than the workers assume, and
adding partitions moves keys), more is a warning; config drift is a warning.

    python -m infra.stack topics --profile test
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from infra.services import quiet_client_config
from schemas.topics import ALL_TOPICS, TopicSpec

REPLICATION = 1
WARMUP_ID = "kuailv-infra-warmup"  # group id looked up and transactional id registered by warm_up_coordinators


class TopicError(RuntimeError):
    """Topics could not be created, or an existing one contradicts the contract."""


@dataclass
class TopicResult:
    spec: TopicSpec
    status: str  # "created" | "exists" | "FEWER PARTITIONS" | "more partitions"
    partitions: int
    replication: int
    config_drift: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # key -> (wanted, actual)

    @property
    def is_error(self) -> bool:
        return self.partitions < self.spec.partitions

    def problems(self) -> list[str]:
        out = []
        name, want, have = self.spec.name, self.spec.partitions, self.partitions
        if have < want:
            out.append(
                f"ERROR: topic {name} has {have} partitions but the contract (schemas/topics.py) says {want}. "
                "Not changed: adding partitions moves keys. Reset the stack (python -m infra.stack reset) "
                "or alter it deliberately."
            )
        elif have > want:
            out.append(f"warning: topic {name} has {have} partitions, more than the {want} of the contract")
        for key, (wanted, actual) in sorted(self.config_drift.items()):
            out.append(f"warning: topic {name} has {key}={actual}, the contract says {wanted} (not changed)")
        return out


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(quiet_client_config(bootstrap))


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec] = ALL_TOPICS, timeout: float = 30.0) -> list[TopicResult]:
    """Create missing topics, check existing ones; returns one result per spec. Raises TopicError on failure."""
    specs = list(specs)
    admin = _admin(bootstrap)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc

    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=REPLICATION, config=dict(s.config))
            for s in missing
        ]
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                created.add(name)
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # someone else created it meanwhile
                raise TopicError(f"creating topic {name} failed: {exc}") from exc
        _wait_for_leaders(admin, {s.name: s.partitions for s in missing}, timeout)

    metadata = admin.list_topics(timeout=timeout).topics
    drift = _config_drift(admin, [s for s in specs if s.name not in created], timeout)
    results = []
    for spec in specs:
        topic = metadata[spec.name]
        partitions = len(topic.partitions)
        replication = min((len(p.replicas) for p in topic.partitions.values()), default=0)
        if spec.name in created:
            status = "created"
        elif partitions < spec.partitions:
            status = "FEWER PARTITIONS"
        elif partitions > spec.partitions:
            status = "more partitions"
        else:
            status = "exists"
        results.append(TopicResult(spec, status, partitions, replication, drift.get(spec.name, {})))
    return results


def _wait_for_leaders(admin: AdminClient, wanted: dict[str, int], timeout: float) -> None:
    """Block until new topics show every partition with a leader, so consumers started next find them."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        pending = [
            name
            for name, count in wanted.items()
            if name not in topics
            or len(topics[name].partitions) < count
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics created but without partition leaders after {timeout}s: {pending}")
        time.sleep(0.1)


def _config_drift(
    admin: AdminClient, specs: list[TopicSpec], timeout: float
) -> dict[str, dict[str, tuple[str, str | None]]]:
    wanted = {s.name: s.config for s in specs if s.config}
    if not wanted:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in wanted], request_timeout=timeout
    )
    drift: dict[str, dict[str, tuple[str, str | None]]] = {}
    for resource, future in futures.items():
        actual = {key: entry.value for key, entry in future.result().items()}
        for key, value in wanted[resource.name].items():
            if actual.get(key) != value:
                drift.setdefault(resource.name, {})[key] = (value, actual.get(key))
    return drift


def warm_up_coordinators(bootstrap: str, timeout: float = 30.0) -> None:
    """Have the broker create its internal topics now rather than under the first test.

    The first consumer group lookup creates ``__consumer_offsets`` and the first
    idempotent or transactional producer creates ``__transaction_state``; on a
    fresh broker either costs a few seconds of "coordinator load in progress"
    retries. Both calls are instant once those topics exist.
    """
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Short attempts: one request stuck behind a slow first election must not use up the budget.
            admin.describe_consumer_groups([WARMUP_ID], request_timeout=5.0)[WARMUP_ID].result()
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TopicError(f"group coordinator not available after {timeout}s: {exc}") from exc
            time.sleep(0.2)
    producer = Producer({**quiet_client_config(bootstrap), "transactional.id": WARMUP_ID})
    try:
        producer.init_transactions(max(1.0, deadline - time.monotonic()))
    except KafkaException as exc:
        raise TopicError(f"transaction coordinator not available: {exc}") from exc


def format_table(results: list[TopicResult]) -> str:
    rows = [("topic", "partitions", "replication", "cleanup.policy", "retention.ms", "status")]
    for r in results:
        policy = _shown(r, "cleanup.policy", "delete")
        retention = _shown(r, "retention.ms", "default")
        shown = str(r.partitions) if r.partitions == r.spec.partitions else f"{r.partitions} (want {r.spec.partitions})"
        rows.append((r.spec.name, shown, str(r.replication), policy, retention, r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _shown(result: TopicResult, key: str, default: str) -> str:
    wanted = result.spec.config.get(key, default)
    if key in result.config_drift:
        return f"{result.config_drift[key][1]} (want {wanted})"
    return wanted
