"""What the outbox relay promises, as assertions run against a fake AND the real Kafka.

``tests/unit/commands/test_relay_unit.py`` runs these with ``FakeProducer``;
``tests/integration/test_relay.py`` runs the very same functions against the
test stack's broker. A harness gives the topic, a good and a failing producer
factory, and ``read_all()`` (every record on the topic, in partition order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from commands.avro_mapping import to_avro
from commands.order_service import OrderService
from commands.relay import OutboxRelay, ProducerFactory, RelayDeliveryFailed
from projections.order_state import fold_all
from projections.timefmt import jsonable
from schemas.codec import AvroCodec
from tests.unit.commands.order_commands_kit import drive, record_stories

CODEC = AvroCodec()


@dataclass
class RelayHarness:
    topic: str
    producer_factory: ProducerFactory
    failing_producer_factory: ProducerFactory
    read_all: Callable[[], list[tuple[bytes, bytes]]]
    flush_timeout: float = 30.0


class Crash(Exception):
    """Stands for the process dying between the Kafka flush and the tracking write."""


def recorded_records(service: OrderService) -> list[tuple[str, dict[str, Any]]]:
    notifications = service.recorder.select_notifications(start=None, limit=1_000_000)
    return [to_avro(service.mapper.to_domain_event(n)) for n in notifications]  # type: ignore[arg-type]


def check_topic(messages: list[tuple[bytes, bytes]], recorded: list[tuple[str, dict[str, Any]]],
                expected_status: dict[str, str]) -> dict[tuple[str, int], set[bytes]]:
    """Every recorded event is on the topic, keyed by its order id; copies are byte-identical;
    the stream fold gets the expected statuses without a rejection. Returns (order, version) -> values."""
    copies: dict[tuple[str, int], set[bytes]] = {}
    folded = []
    for key, value in messages:
        decoded = CODEC.decode(value)
        record = jsonable(decoded.value)
        assert key == record["order_id"].encode(), (key, record["order_id"])
        copies.setdefault((record["order_id"], record["version"]), set()).add(value)
        folded.append((decoded.record_type, decoded.value))
    want = {(record["order_id"], record["version"]): record for _, record in recorded}
    assert set(copies) == set(want), "topic and event store disagree on (order_id, version)"
    assert all(len(values) == 1 for values in copies.values()), "a re-send differs from the original"
    for ov, values in copies.items():
        assert jsonable(CODEC.decode(next(iter(values))).value) == want[ov]
    states, rejections = fold_all(folded)
    assert rejections == []
    assert {oid: state["view"]["status"] for oid, state in states.items()} == expected_status
    return copies


def _per_key_versions(messages: list[tuple[bytes, bytes]]) -> dict[bytes, list[int]]:
    versions: dict[bytes, list[int]] = {}
    for key, value in messages:
        versions.setdefault(key, []).append(CODEC.decode(value).value["version"])
    return versions


def contract_publishes_every_event_once_in_order_then_tracks(service: OrderService, h: RelayHarness) -> None:
    expected = record_stories(service, 5, "C1")
    recorded = recorded_records(service)
    relay = OutboxRelay(service, h.producer_factory, topic=h.topic, flush_timeout=h.flush_timeout)
    assert relay.position == 0
    assert relay.run_once(limit=1000) == len(recorded)
    assert relay.position == service.recorder.max_notification_id()
    assert relay.run_once() == 0
    messages = h.read_all()
    assert len(messages) == len(recorded)
    check_topic(messages, recorded, expected)
    assert all(v == list(range(1, len(v) + 1)) for v in _per_key_versions(messages).values())

    drive(service, "C1-late", ["create"])
    assert relay.run_once() == 1
    assert len(h.read_all()) == len(recorded) + 1


def contract_failed_delivery_keeps_the_position(service: OrderService, h: RelayHarness) -> None:
    expected = record_stories(service, 2, "C2")
    recorded = recorded_records(service)
    failing = OutboxRelay(service, h.failing_producer_factory, topic=h.topic, flush_timeout=h.flush_timeout)
    with pytest.raises(RelayDeliveryFailed) as info:
        failing.run_once()
    error = info.value
    assert error.topic == h.topic and f"topic={h.topic}" in str(error)
    assert error.order_id in expected and f"order={error.order_id}" in str(error)
    assert error.notification_id is not None and 1 <= error.notification_id <= len(recorded)
    assert failing.position == 0
    assert h.read_all() == []

    relay = OutboxRelay(service, h.producer_factory, topic=h.topic, flush_timeout=h.flush_timeout)
    assert relay.run_once() == len(recorded)
    check_topic(h.read_all(), recorded, expected)


def contract_resend_after_a_crash_carries_the_same_ids(service: OrderService, h: RelayHarness) -> None:
    expected = record_stories(service, 3, "C3")
    recorded = recorded_records(service)

    def crash(published: int, last_notification_id: int) -> None:
        raise Crash(f"died after flushing {published} records up to notification {last_notification_id}")

    dying = OutboxRelay(service, h.producer_factory, topic=h.topic, before_tracking=crash,
                        flush_timeout=h.flush_timeout)
    with pytest.raises(Crash):
        dying.run_once(limit=10)
    assert dying.position == 0
    assert len(h.read_all()) == 10

    restarted = OutboxRelay(service, h.producer_factory, topic=h.topic, flush_timeout=h.flush_timeout)
    assert restarted.run_once() == len(recorded)
    messages = h.read_all()
    assert len(messages) == len(recorded) + 10
    copies = check_topic(messages, recorded, expected)
    assert len(copies) == len(recorded)
