"""The outbox relay against the REAL Kafka of the test stack.

1. The relay contract (``tests/unit/commands/relay_contract.py``), the same
   assertions the unit tests run on FakeProducer, here on the real broker.
2. Crash tests: the relay runs in a subprocess over a SQLite event store and
   is killed (a) by a test hook right after a Kafka flush and before the
   tracking write, (b) by SIGKILL at a random moment. After a restart, every
   recorded event is on the topic, distinct (order_id, version) == recorded
   events, and every duplicate is byte-identical (same event_id and version).

Each test gets its own topic (same partition count as the real order topic)
and its own event store, so reruns never see each other's records.
This module is also the relay subprocess: ``python -m tests.integration.test_relay``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.order_service import OrderService
from commands.relay import OutboxRelay, ProducerLike, kafka_producer_factory
from schemas.topics import ORDER_EVENTS
from tests.unit.commands import relay_contract as contract
from tests.unit.commands.order_commands_kit import record_stories

ROOT = Path(__file__).resolve().parents[2]
CRASH_EXIT = 86  # exit status of the worker when the test hook kills it

pytestmark = pytest.mark.integration


# --- the real broker --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from infra import stack

    was_running = stack.is_healthy("test", ["kafka"])
    settings = stack.ensure_started("test", services=["kafka"])
    try:
        yield settings.kafka_bootstrap
    finally:
        if not was_running and not os.environ.get("KUAILV_KEEP_TEST_STACK"):
            stack.stop("test", ["kafka"])


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"kuailv.order-events.it-relay-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = NewTopic(name, num_partitions=ORDER_EVENTS.partitions, replication_factor=1,
                   config=dict(ORDER_EVENTS.config))
    admin.create_topics([new], operation_timeout=30)[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every partition has a leader
        meta = admin.list_topics(name, timeout=10).topics[name]
        if meta.error is None and len(meta.partitions) == ORDER_EVENTS.partitions and all(
                p.leader >= 0 for p in meta.partitions.values()):
            break
        time.sleep(0.2)
    yield name
    admin.delete_topics([name], operation_timeout=30)


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every record on ``topic`` up to the current high watermarks, partition by partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-relay-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        ends = {}
        for p in range(ORDER_EVENTS.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append((msg.key(), msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                del ends[msg.partition()]
        assert not ends, f"partitions {sorted(ends)} of {topic} not read to their end"
        return out
    finally:
        consumer.close()


def unreachable_producer() -> ProducerLike:
    """A real Producer whose deliveries fail (nothing listens on port 1): delivery reports carry errors."""
    from confluent_kafka import Producer

    from commands.relay import producer_config

    producer: ProducerLike = Producer(producer_config("127.0.0.1:1", **{
        "delivery.timeout.ms": 2000, "log_level": 0}))
    return producer


@pytest.fixture
def harness(kafka_bootstrap: str, topic: str) -> contract.RelayHarness:
    return contract.RelayHarness(topic=topic, producer_factory=kafka_producer_factory(kafka_bootstrap),
                                 failing_producer_factory=unreachable_producer,
                                 read_all=lambda: read_all(kafka_bootstrap, topic), flush_timeout=30.0)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/orders.sqlite"


# --- 1. the contract on the real broker ---------------------------------------------------------------------


def test_contract_publishes_every_event_once_in_order_then_tracks(store_url: str,
                                                                  harness: contract.RelayHarness) -> None:
    contract.contract_publishes_every_event_once_in_order_then_tracks(OrderService.from_url(store_url), harness)


def test_contract_failed_delivery_keeps_the_position(store_url: str, harness: contract.RelayHarness) -> None:
    contract.contract_failed_delivery_keeps_the_position(OrderService.from_url(store_url), harness)


def test_contract_resend_after_a_crash_carries_the_same_ids(store_url: str,
                                                            harness: contract.RelayHarness) -> None:
    contract.contract_resend_after_a_crash_carries_the_same_ids(OrderService.from_url(store_url), harness)


def test_relay_main_once_publishes_everything_recorded(kafka_bootstrap: str, topic: str, store_url: str) -> None:
    from dataclasses import replace

    from commands.relay_main import main
    from config.settings import load

    service = OrderService.from_url(store_url)
    expected = record_stories(service, 4, "M")
    settings = replace(load("test"), eventstore_url=store_url, kafka_bootstrap=kafka_bootstrap)
    assert main(settings, once=True, topic=topic, batch=7) == 0
    on_topic, recorded = _check(kafka_bootstrap, topic, service, expected)
    assert on_topic == recorded == _position(service, topic)


# --- 2. crashes of a relay process --------------------------------------------------------------------------


def _worker(store_url: str, topic: str, bootstrap: str, log: Path, *, limit: int, crash_after: int | None = None,
            forever: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.integration.test_relay", "--url", store_url, "--topic", topic,
            "--bootstrap", bootstrap, "--limit", str(limit)]
    if crash_after is not None:
        args += ["--crash-after", str(crash_after)]
    if forever:
        args.append("--forever")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _position(service: OrderService, topic: str) -> int:
    return OutboxRelay(service, unreachable_producer, topic=topic).position  # the factory is never called


def _check(bootstrap: str, topic: str, service: OrderService, expected: dict[str, str]) -> tuple[int, int]:
    """All recorded events on the topic; returns (records on the topic, recorded events)."""
    recorded = contract.recorded_records(service)
    messages = read_all(bootstrap, topic)
    copies = contract.check_topic(messages, recorded, expected)  # at least once, identical duplicates, fold ok
    assert len(copies) == len(recorded)
    return len(messages), len(recorded)


def test_relay_killed_after_flush_before_tracking_resends_identical_records(
        kafka_bootstrap: str, topic: str, store_url: str, tmp_path: Path) -> None:
    service = OrderService.from_url(store_url)
    expected = record_stories(service, 20, "K")
    total = service.recorder.max_notification_id()
    log = tmp_path / "relay.log"

    first = _worker(store_url, topic, kafka_bootstrap, log, limit=25, crash_after=60)
    assert first.wait(120) == CRASH_EXIT, log.read_text()
    assert _position(service, topic) == 50  # batches 1-2 tracked, batch 3 flushed but not tracked
    assert len(read_all(kafka_bootstrap, topic)) == 75

    second = _worker(store_url, topic, kafka_bootstrap, log, limit=25)
    assert second.wait(120) == 0, log.read_text()
    assert _position(service, topic) == total
    on_topic, recorded = _check(kafka_bootstrap, topic, service, expected)
    assert (on_topic, recorded) == (total + 25, total)


def test_relay_sigkilled_at_a_random_moment_loses_nothing(kafka_bootstrap: str, topic: str, store_url: str,
                                                          tmp_path: Path) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    service = OrderService.from_url(store_url)
    expected = record_stories(service, 40, "S")
    total = service.recorder.max_notification_id()
    log = tmp_path / "relay.log"
    context = f"seed={seed}, log={log}"

    victim = _worker(store_url, topic, kafka_bootstrap, log, limit=3, forever=True)
    threshold = rng.randint(total // 5, total // 2)
    deadline = time.monotonic() + 120
    while _position(service, topic) < threshold and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.005)
    time.sleep(rng.random() * 0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = _position(service, topic)
    assert threshold <= killed_at < total, f"the kill did not land mid-run ({killed_at}/{total}, {context})"

    survivor = _worker(store_url, topic, kafka_bootstrap, log, limit=3, forever=True)
    try:
        deadline = time.monotonic() + 120
        while _position(service, topic) < total and time.monotonic() < deadline:
            assert survivor.poll() is None, f"relay died: {log.read_text()}"
            time.sleep(0.05)
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(30) == 0, context
    assert _position(service, topic) == total, context
    on_topic, recorded = _check(kafka_bootstrap, topic, service, expected)
    assert recorded == total and total <= on_topic <= total + 3, context  # at most one batch re-sent


# --- the relay subprocess ---------------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--crash-after", type=int, default=None,
                        help="exit abruptly once this many records are flushed, before tracking them")
    parser.add_argument("--forever", action="store_true")
    args = parser.parse_args(argv)
    flushed = {"n": 0}

    def before_tracking(published: int, _last_notification_id: int) -> None:
        flushed["n"] += published
        if args.crash_after is not None and flushed["n"] >= args.crash_after:
            os._exit(CRASH_EXIT)  # like kill -9: no cleanup, no tracking write

    relay = OutboxRelay(OrderService.from_url(args.url), kafka_producer_factory(args.bootstrap), topic=args.topic,
                        before_tracking=before_tracking)
    if args.forever:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        relay.run_forever(0.02, stop, limit=args.limit)
        return 0
    while relay.run_once(args.limit):
        pass
    relay.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
