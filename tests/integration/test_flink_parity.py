"""Parity: the same event log (duplicates, reordering, poison) through the worker
worker and through the PyFlink job, both on the real Kafka, gives identical
projections and the same dead letters.

Every projection added later (geofence, SLA, predictions, KPIs) joins this test
by adding an entry to PROJECTIONS: how to read its result from each engine.
"""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import Settings
from infra import flink_env
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, VAN_ORDERS
from simulator.events import MINUTE, T0, order_dispatched, order_story
from streams.replay import read_topic
from streams.sinks.redis_orders import RedisOrderStore
from tests.integration.kafka_helpers import SyncProducer, wait_for
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.integration
ENDINGS = ["signed", "redispatched", "refused", "cancelled", "out_of_stock"]


@dataclass
class ParityRun:
    settings: Settings
    tag: str
    events: list[tuple[str, dict[str, Any]]]
    poison: dict[str, tuple[int, int]]  # name -> (partition, offset) on the order-events topic
    flink_output: str
    flink_dead_letters: str
    redis_prefix: str

    def ours(self, order_id: str) -> bool:
        return order_id.startswith(f"KLP{self.tag}")


def _worker_order_views(run: ParityRun) -> dict[str, dict[str, Any]]:
    rc = redis.Redis.from_url(run.settings.redis_url)
    store = RedisOrderStore(rc, run.redis_prefix)
    out = {}
    for key in rc.scan_iter(f"{run.redis_prefix}:order:KLP{run.tag}*"):
        view = store.view(key.decode().rsplit(":", 1)[-1])
        if view is not None:
            out[view["orderId"]] = view
    return out


def _flink_order_views(run: ParityRun) -> dict[str, dict[str, Any]]:
    codec = AvroCodec()
    latest: dict[str, dict[str, Any]] = {}
    for rec in read_topic(run.settings.kafka_bootstrap, run.flink_output):
        state = codec.decode(rec.value).value
        if run.ours(state["order_id"]) and state["version"] >= latest.get(state["order_id"], {}).get("version", 0):
            latest[state["order_id"]] = state
    # the topic carries the Avro OrderState; compare in the public JSON form the worker stores
    return {oid: json.loads(json.dumps(public_view(_ms(v)))) for oid, v in latest.items()}


def _ms(view: dict[str, Any]) -> dict[str, Any]:
    from projections.timefmt import jsonable

    return jsonable(view)


# name -> (read the worker's result, read Flink's)
PROJECTIONS: dict[str, tuple[Callable[[ParityRun], dict], Callable[[ParityRun], dict]]] = {
    "order-state": (_worker_order_views, _flink_order_views),
}


def _dead_letters(run: ParityRun, topic: str, consumer_prefix: str) -> dict[tuple[int, int], str]:
    codec = AvroCodec()
    out = {}
    for rec in read_topic(run.settings.kafka_bootstrap, topic):
        d = codec.decode(rec.value).value
        if d["consumer"].startswith(consumer_prefix) and d["source_topic"] == ORDER_EVENTS.name:
            out[(d["source_partition"], d["source_offset"])] = d["reason_code"]
    return out


@pytest.fixture(scope="module")
def parity(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParityRun]:
    tag = uuid.uuid4().hex[:8]
    codec = AvroCodec()
    rng = random.Random(11)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(25):
        events += order_story(f"KLP{tag}{i:03d}", T0 + i * MINUTE, ending=ENDINGS[i % len(ENDINGS)])
    log = events + rng.sample(events, 30)
    rng.shuffle(log)
    producer = SyncProducer(stack.kafka_bootstrap)
    refs = {}
    for t, e in log:
        producer.send(ORDER_EVENTS.name, e["order_id"].encode(), codec.encode(t, e))
    victim = f"KLP{tag}000"
    refs["garbage"] = producer.send(ORDER_EVENTS.name, victim.encode(), b"\x01 not avro")
    t, e = order_dispatched(f"KLP{tag}003", 3, T0 + 9 * MINUTE)  # cancelled story: v3 is taken
    e["event_id"] = str(uuid.uuid4())
    refs["conflict"] = producer.send(ORDER_EVENTS.name, e["order_id"].encode(), codec.encode(t, e))
    events.append((t, e))
    positions = producer.flush()

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    out_topic, dlq_topic = f"kuailv.parity-{tag}.order-state", f"kuailv.parity-{tag}.dead-letters"
    van_topic, fleet_topic = f"kuailv.parity-{tag}.van-orders", f"kuailv.parity-{tag}.fleet"
    for f in admin.create_topics([NewTopic(out_topic, 6, 1, config={"cleanup.policy": "compact"}),
                                  NewTopic(dlq_topic, 3, 1), NewTopic(van_topic, 6, 1),
                                  NewTopic(fleet_topic, 1, 1)]).values():
        f.result(30)
    run = ParityRun(stack, tag, events, {k: positions[v] for k, v in refs.items()}, out_topic, dlq_topic,
                    f"par{tag}")
    tmp = tmp_path_factory.mktemp("parity")
    worker = ProjectProcess(["worker", "--loglevel", "warning"],
                            {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-parity-{tag}",
                             "KUAILV_REDIS_PREFIX": run.redis_prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.1"},
                            tmp / "worker.log").start()
    try:
        flink = subprocess.run(
            [str(flink_env.python_executable()), "-m", "jobs.order_state_job", "--profile", "test", "--local",
             "--mode", "thread", "--bounded", "--no-restart", "--parallelism", "2", "--group", f"flink-parity-{tag}",
             "--output-topic", out_topic, "--dead-letter-topic", dlq_topic, "--van-orders-topic", van_topic,
             "--fleet-topic", fleet_topic,
             "--checkpoint-ms", "2000"],
            cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert flink.returncode == 0, flink.stdout[-3000:] + flink.stderr[-5000:]
        yield run
    finally:
        worker.stop()
        for f in admin.delete_topics([out_topic, dlq_topic, van_topic, fleet_topic]).values():
            f.result(30)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_worker_and_flink_give_identical_projections(parity: ParityRun, name: str) -> None:
    read_worker, read_flink = PROJECTIONS[name]
    states, _ = fold_all(parity.events)
    expected = {oid: public_view(s["view"]) for oid, s in states.items() if s["view"] is not None}
    expected = json.loads(json.dumps(expected))

    def worker_done() -> bool:
        got = read_worker(parity)
        return len(got) == len(expected) and all(got[o]["version"] == v["version"] for o, v in expected.items())

    wait_for(worker_done, 120, "the worker to project every order", interval=0.5)
    worker = read_worker(parity)
    flink = read_flink(parity)
    assert flink == worker
    assert worker == expected


def test_worker_and_flink_dead_letter_the_same_records_for_the_same_reasons(parity: ParityRun) -> None:
    wanted = {parity.poison["garbage"]: "NOT_AVRO_FRAMED", parity.poison["conflict"]: "VERSION_CONFLICT"}

    def worker() -> dict[tuple[int, int], str]:
        got = _dead_letters(parity, DEAD_LETTERS.name, f"kuailv-parity-{parity.tag}")
        return got if set(wanted) <= set(got) else {}

    worker_dl = wait_for(worker, 60, "worker dead letters")
    flink_dl = _dead_letters(parity, parity.flink_dead_letters, "flink:order-state")
    assert {k: worker_dl[k] for k in wanted} == wanted
    assert {k: flink_dl.get(k) for k in wanted} == wanted


def test_worker_and_flink_publish_the_same_van_orders(parity: ParityRun) -> None:
    """The geofence projection's input: every move of an order on or off a van, per order in version order."""
    codec = AvroCodec(epoch_ms=True)

    def per_order(topic: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for rec in read_topic(parity.settings.kafka_bootstrap, topic):
            v = codec.decode(rec.value).value
            if parity.ours(v["order_id"]):
                out.setdefault(v["order_id"], []).append(v)
        return out

    flink = per_order(f"kuailv.parity-{parity.tag}.van-orders")
    assert len(flink) >= 10, "the stories dispatch most orders"
    worker = wait_for(lambda: (w := per_order(VAN_ORDERS.name)) == flink and w, 60, "the worker's van orders")
    assert worker == flink


def test_replay_of_the_topic_gives_the_same_projections_as_the_worker_and_flink(parity: ParityRun) -> None:
    from streams.replay import read_topic_batches, replay_batches

    test_worker_and_flink_give_identical_projections(parity, "order-state")
    result = replay_batches(read_topic_batches(parity.settings.kafka_bootstrap, ORDER_EVENTS.name),
                            AvroCodec(epoch_ms=True))
    replayed = {v["orderId"]: v for v in result.views() if parity.ours(v["orderId"])}
    assert replayed == _worker_order_views(parity) == _flink_order_views(parity)
