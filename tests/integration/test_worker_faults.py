"""The worker under faults, against the real test stack: SIGKILL mid-stream, Redis restarted
mid-stream, the Kafka broker restarted mid-stream. Each time: nothing lost (every order in
Redis and on the projection topic equals the pure fold of what was produced), nothing
dead-lettered, and the worker (or its successor) carries on by itself.

Records are produced by a background thread while the fault happens, so the fault lands in
the middle of the stream; each test has its own order ids, consumer group and Redis prefix.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings
from infra import stack as infra_stack
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE
from simulator.events import MINUTE, T0, order_story
from streams.replay import read_topic
from streams.sinks.redis_orders import RedisOrderStore
from tests.integration.kafka_helpers import wait_for
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration
ENDINGS = ["signed", "redispatched", "refused", "cancelled", "out_of_stock"]
ORDERS = 150


class Scenario:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.group = f"kuailv-fault-{self.tag}"
        self.prefix = f"fault{self.tag}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": self.group, "KUAILV_REDIS_PREFIX": self.prefix,
                    "KUAILV_WORKER_BATCH_SIZE": "50", "KUAILV_WORKER_BATCH_SECONDS": "0.05"}
        rng = random.Random(self.tag)
        stories = [order_story(f"KLF{self.tag}{i:04d}", T0 + i * MINUTE // 3, ending=ENDINGS[i % len(ENDINGS)])
                   for i in range(ORDERS)]
        events = [ev for story in stories for ev in story]
        events.sort(key=lambda ev: ev[1]["event_time"])
        self.events = events
        self.log = events + rng.sample(events, len(events) // 10)  # re-deliveries
        rng.shuffle(self.log[len(self.log) // 2:])  # and late, reordered ones in the second half
        self.workers: list[ProjectProcess] = []

    def start_worker(self) -> ProjectProcess:
        w = ProjectProcess(["worker", "--agents", "orders", "--loglevel", "info"], self.env,
                           self.tmp / f"worker-{len(self.workers)}.log").start()
        self.workers.append(w)
        return w

    def produce_in_background(self, seconds: float) -> threading.Thread:
        """Produce the log spread over ``seconds``; the producer rides out broker restarts."""
        from confluent_kafka import Producer

        codec = AvroCodec()
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "enable.idempotence": True,
                             "acks": "all", "partitioner": "murmur2_random", "message.timeout.ms": 120_000})
        errors: list[Any] = []
        self.produce_errors = errors

        def run() -> None:
            pause = seconds / len(self.log)
            for t, e in self.log:
                producer.produce(ORDER_EVENTS.name, key=e["order_id"].encode(), value=codec.encode(t, e),
                                 on_delivery=lambda err, msg: errors.append(err) if err else None)
                producer.poll(0)
                time.sleep(pause)
            remaining = producer.flush(120)
            if remaining:
                errors.append(f"{remaining} records unacknowledged")

        thread = threading.Thread(target=run, name="fault-producer", daemon=True)
        thread.start()
        return thread

    def expected(self) -> dict[str, dict[str, Any]]:
        states, rejections = fold_all(self.events)
        assert not rejections
        return {oid: public_view(st["view"]) for oid, st in states.items()}

    def assert_nothing_lost(self) -> None:
        expected = self.expected()
        store = RedisOrderStore(redis.Redis.from_url(self.settings.redis_url), self.prefix)

        def done() -> bool:
            return all(store.view(oid) == view for oid, view in expected.items())

        try:
            wait_for(done, 120, "every order in Redis at its final view", interval=0.5)
        except AssertionError:
            wrong = {oid: (store.view(oid) or {}).get("version") for oid in expected
                     if store.view(oid) != expected[oid]}
            tails = "\n".join(w.log_tail(15) for w in self.workers)
            raise AssertionError(f"{len(wrong)} orders differ, e.g. {list(wrong.items())[:5]}\n{tails}") from None
        codec = AvroCodec(epoch_ms=True)
        latest: dict[str, dict[str, Any]] = {}
        for rec in read_topic(self.settings.kafka_bootstrap, ORDER_STATE.name):
            if rec.key and rec.key.decode().startswith(f"KLF{self.tag}"):
                view = codec.decode(rec.value).value
                if view["version"] >= latest.get(view["order_id"], {}).get("version", 0):
                    latest[view["order_id"]] = view
        assert {oid: public_view(v) for oid, v in latest.items()} == expected, "projection topic incomplete"
        dead = [codec.decode(r.value).value for r in read_topic(self.settings.kafka_bootstrap, DEAD_LETTERS.name)]
        # (the fresh group re-reads the whole topic, other tests' poison included: look at our orders)
        ours = [d for d in dead if d["consumer"].startswith(self.group)
                and (d["key"] or b"").startswith(f"KLF{self.tag}".encode())]
        assert ours == [], [(d["reason_code"], d["reason"]) for d in ours[:3]]

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def scenario(stack: Settings, tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(stack, tmp_path)
    try:
        yield s
    finally:
        s.stop()
        infra_stack.ensure_started("test", services=["kafka", "redis"], create_topics=False, out=None)


def test_a_worker_killed_mid_stream_is_replaced_and_nothing_is_lost(scenario: Scenario) -> None:
    first = scenario.start_worker()
    producer = scenario.produce_in_background(4.0)
    store = RedisOrderStore(redis.Redis.from_url(scenario.settings.redis_url), scenario.prefix)
    wait_for(lambda: store.order_ids(customer="CUST-0001") or store.order_ids(customer="CUST-0002"), 60,
             "the first worker writing")
    time.sleep(1.0)
    first.kill()  # SIGKILL: no flush, no commit, no goodbye
    successor = scenario.start_worker()
    producer.join(180)
    assert scenario.produce_errors == []
    scenario.assert_nothing_lost()
    assert successor.alive(), successor.log_tail()


def test_redis_restarted_mid_stream_is_retried_and_nothing_is_lost(scenario: Scenario) -> None:
    worker = scenario.start_worker()
    producer = scenario.produce_in_background(4.0)
    time.sleep(1.5)
    infra_stack.stop("test", services=["redis"], out=None)  # AOF is flushed on a clean stop
    time.sleep(2.0)
    infra_stack.ensure_started("test", services=["redis"], create_topics=False, out=None)
    producer.join(180)
    scenario.assert_nothing_lost()
    assert worker.alive(), worker.log_tail()
    assert "retrying" in worker.log_tail(400), "the outage should have been retried, not skipped"


def test_the_broker_restarted_mid_stream_is_ridden_out_and_nothing_is_lost(scenario: Scenario) -> None:
    worker = scenario.start_worker()
    producer = scenario.produce_in_background(4.0)
    time.sleep(1.5)
    infra_stack.stop("test", services=["kafka"], out=None)
    time.sleep(2.0)
    infra_stack.ensure_started("test", services=["kafka"], create_topics=False, out=None)
    producer.join(180)
    assert scenario.produce_errors == []
    scenario.assert_nothing_lost()
    assert worker.alive(), worker.log_tail()
