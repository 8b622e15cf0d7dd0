"""OutboxRelay without a network: the shared contract on FakeProducer, plus the failure paths
only a fake can provoke on demand (queue full, partial delivery, a poisoned stored event)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from eventsourcing.persistence import StoredEvent

from commands.order_service import OrderService
from commands.relay import OutboxRelay, RelayDeliveryFailed, RelayMappingFailed, producer_config
from tests.unit.commands import relay_contract as contract
from tests.unit.commands.fake_kafka import FakeBroker, FakeProducer
from tests.unit.commands.order_commands_kit import drive, record_stories

TOPIC = "kuailv.order-events.unit"


@pytest.fixture
def service(tmp_path: Path) -> OrderService:
    return OrderService.from_url(f"sqlite:///{tmp_path}/orders.sqlite")


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def harness(broker: FakeBroker) -> contract.RelayHarness:
    return contract.RelayHarness(
        topic=TOPIC,
        producer_factory=lambda: FakeProducer(broker),
        failing_producer_factory=lambda: FakeProducer(broker, deliver_ok=0),
        read_all=lambda: broker.read_all(TOPIC),
    )


# --- the contract (also run against the real broker in tests/integration/test_relay.py) -------------


def test_contract_publishes_every_event_once_in_order_then_tracks(service: OrderService,
                                                                  harness: contract.RelayHarness) -> None:
    contract.contract_publishes_every_event_once_in_order_then_tracks(service, harness)


def test_contract_failed_delivery_keeps_the_position(service: OrderService, harness: contract.RelayHarness) -> None:
    contract.contract_failed_delivery_keeps_the_position(service, harness)


def test_contract_resend_after_a_crash_carries_the_same_ids(service: OrderService,
                                                            harness: contract.RelayHarness) -> None:
    contract.contract_resend_after_a_crash_carries_the_same_ids(service, harness)


def test_contract_holds_on_the_in_memory_store_too(harness: contract.RelayHarness) -> None:
    contract.contract_publishes_every_event_once_in_order_then_tracks(OrderService.from_url("memory://"), harness)


# --- fake-only failure paths ----------------------------------------------------------------------------


def test_partial_delivery_failure_moves_nothing_and_the_next_pass_uses_a_fresh_producer(
        service: OrderService, broker: FakeBroker) -> None:
    record_stories(service, 2, "P")
    made: list[FakeProducer] = []

    def factory() -> FakeProducer:
        made.append(FakeProducer(broker, deliver_ok=3 if not made else None))
        return made[-1]

    relay = OutboxRelay(service, factory, topic=TOPIC)
    with pytest.raises(RelayDeliveryFailed, match=r"of \d+ record\(s\) not delivered.*notification=4"):
        relay.run_once()
    assert relay.position == 0
    total = service.recorder.max_notification_id()
    assert relay.run_once() == total
    assert len(made) == 2 and relay.position == total
    assert len(broker.read_all(TOPIC)) == 3 + total  # the 3 delivered before the failure are re-sent


def test_full_local_queue_is_retried_after_serving_delivery_reports(service: OrderService,
                                                                    broker: FakeBroker) -> None:
    record_stories(service, 1, "Q")
    producer = FakeProducer(broker, buffer_errors=3)
    relay = OutboxRelay(service, lambda: producer, topic=TOPIC)
    assert relay.run_once() == service.recorder.max_notification_id()
    assert producer.polls >= 3
    assert len(broker.read_all(TOPIC)) == relay.position


def test_a_poisoned_stored_event_stops_the_relay_after_publishing_what_precedes_it(
        service: OrderService, broker: FakeBroker) -> None:
    drive(service, "G1", ["create", "confirm_payment"])
    service.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "kuailv.commands.Order.Created", b"{not json")])
    drive(service, "G2", ["create"])
    relay = OutboxRelay(service, lambda: FakeProducer(broker), topic=TOPIC)
    with pytest.raises(RelayMappingFailed, match=r"cannot publish stored event .*notification=3.*topic="):
        relay.run_once()
    assert relay.position == 2
    assert len(broker.read_all(TOPIC)) == 2
    with pytest.raises(RelayMappingFailed):
        relay.run_once()
    assert len(broker.read_all(TOPIC)) == 2  # nothing re-sent, nothing skipped


def test_relays_to_different_topics_track_separately(service: OrderService, broker: FakeBroker) -> None:
    drive(service, "T1", ["create", "confirm_payment"])
    a = OutboxRelay(service, lambda: FakeProducer(broker), topic="topic-a")
    b = OutboxRelay(service, lambda: FakeProducer(broker), topic="topic-b")
    assert a.run_once() == 2
    assert b.position == 0 and b.run_once() == 2


def test_run_forever_publishes_new_events_and_survives_a_failing_pass(service: OrderService,
                                                                      broker: FakeBroker) -> None:
    calls = {"n": 0}

    def factory() -> FakeProducer:
        calls["n"] += 1
        return FakeProducer(broker, deliver_ok=0 if calls["n"] == 1 else None)

    relay = OutboxRelay(service, factory, topic=TOPIC)
    stop = threading.Event()
    worker = threading.Thread(target=relay.run_forever, args=(0.01, stop), kwargs={"max_backoff": 0.05})
    drive(service, "F1", ["create", "confirm_payment"])
    worker.start()
    try:
        for _ in range(500):
            if relay.position == 2:
                break
            stop.wait(0.01)
        drive(service, "F2", ["create"])
        for _ in range(500):
            if relay.position == 3:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()
    assert relay.position == 3 and calls["n"] >= 2
    assert len(broker.read_all(TOPIC)) == 3


def test_producer_config_is_idempotent_ordered_and_accepted_by_librdkafka() -> None:
    config = producer_config("127.0.0.1:1")
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert 1 <= config["max.in.flight.requests.per.connection"] <= 5
    assert config["linger.ms"] <= 20
    Producer(config)  # librdkafka validates the configuration here (no connection needed)
