"""The worker, the Flink jobs and ``kuailv replay`` agree on the KPI figures of one simulated log with
duplicates injected (docs/kpis.md).

A seeded day of orders goes to a private order-event topic (some events re-published later), and a few
cold-chain-exposure alerts (one re-published, plus an alert of another rule) to a private alert topic.
Two worker processes in one consumer group (scale-out: the partitions are split between them) run the
order agent and the three KPI agents. Once the order views are out, some of them are re-published on
the order-state topic, older versions after newer ones (duplicates and reordering on the KPI input).
Then:

* the worker's ``kuailv.kpis.v1`` (latest per window), its Redis hashes and its InfluxDB points;
* ``kuailv replay --topic --projection kpis`` over the same alert and order-state topics;
* the three bounded PyFlink jobs (``--projection kpi-exposures``, ``kpi-orders``, ``kpis``), chained
  through their own topics from the same alert and order-state topics;

must hold the same figures, and the city's figures must be the ones computed straight from the
orders' final views (``projections.kpis``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from config.settings import Settings
from infra import flink_env
from projections.kpis import contribution, figures, order_facts, window_keys
from projections.order_state import fold_all
from projections.order_status import ORDER_EVENT_TYPES
from schemas.codec import AvroCodec
from schemas.topics import (
    ALERTS,
    DEAD_LETTERS,
    FLEET,
    KPI_CONTRIBUTIONS,
    KPI_EXPOSURES,
    KPIS,
    ORDER_EVENTS,
    ORDER_STATE,
    VAN_ORDERS,
)
from simulator.config import SimulationConfig
from simulator.traffic import event_log
from streams.kafka_lag import group_lag
from streams.replay import read_topic
from streams.sinks.redis_kpis import RedisKpis
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.integration
EXPOSED = 6


def exposure_alerts(order_ids: list[str], at: int) -> list[dict[str, Any]]:
    out = []
    for i in range(EXPOSED // 2):
        a = {"alert_id": f"cold-chain-exposure/vehicle/VAN-{i}/CHILLED/trip-{at}", "rule_id": "cold-chain-exposure",
             "rule_version": 1, "severity": "CRITICAL", "status": "OPEN", "order_id": None, "driver_id": None,
             "vehicle_id": f"VAN-{i}", "warehouse_id": None, "customer_id": None, "opened_at": at, "updated_at": at,
             "resolved_at": None, "occurrences": 1, "message": "exposed", "evidence": {"orders": order_ids[2 * i]},
             "location": None, "audience": ["OPERATOR"]}
        out += [a, {**a, "status": "RESOLVED", "updated_at": at + 600_000, "resolved_at": at + 600_000,
                    "evidence": {"orders": f"{order_ids[2 * i]},{order_ids[2 * i + 1]}"}}]
    other = {**out[0], "alert_id": f"late-delivery/order/{order_ids[-1]}", "rule_id": "late-delivery",
             "evidence": {"orders": order_ids[-1]}}
    return [*out, other, out[1]]  # the last one re-published


class Run:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.settings = settings
        self.topics = private_topics(settings.kafka_bootstrap, self.tag,
                                     [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, FLEET, ALERTS, DEAD_LETTERS,
                                      KPI_EXPOSURES, KPI_CONTRIBUTIONS, KPIS])
        self.flink_topics = private_topics(settings.kafka_bootstrap, f"{self.tag}-flink",
                                           [KPI_EXPOSURES, KPI_CONTRIBUTIONS, KPIS, DEAD_LETTERS])
        self.influx_db = f"kpi_{self.tag}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-kpi-{self.tag}",
                    "KUAILV_REDIS_PREFIX": f"kpi{self.tag}", "KUAILV_WORKER_BATCH_SECONDS": "0.05",
                    "KUAILV_WORKER_BATCH_SIZE": "40", "KUAILV_INFLUX_DB": self.influx_db,
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics)}
        self.codec = AvroCodec(epoch_ms=True)

    def influx(self, q: str, method: str = "GET") -> Any:
        url = f"{self.settings.influx_url}/query?" + urllib.parse.urlencode({"db": self.influx_db, "q": q})
        req = urllib.request.Request(url, method=method)
        return json.load(urllib.request.urlopen(req, timeout=10))

    def lag(self, suffix: str, *specs: Any) -> int:
        return group_lag(self.settings.kafka_bootstrap, f"kuailv-kpi-{self.tag}{suffix}",
                         [self.topics[s.name] for s in specs])

    def read(self, topic: str) -> list[dict[str, Any]]:
        return [self.codec.decode(r.value).value for r in read_topic(self.settings.kafka_bootstrap, topic)]

    def flink(self, stage: str, renames: dict[str, str]) -> None:
        cmd = [str(flink_env.python_executable()), "-m", "jobs.timed_projection_job", "--projection", stage,
               "--profile", "test", "--local", "--mode", "thread", "--bounded", "--no-restart", "--parallelism", "2",
               "--group", f"flink-kpi-{self.tag}-{stage}", "--checkpoint-ms", "2000",
               *(a for c, actual in renames.items() for a in ("--rename", f"{c}={actual}"))]
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400)
        assert out.returncode == 0, out.stdout[-6000:]


def latest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["window_key"]: f for f in rows}


@pytest.fixture(scope="module")
def run(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    r = Run(stack)
    r.influx(f'CREATE DATABASE "{r.influx_db}"', "POST")
    log = event_log(SimulationConfig(seed=11, orders=60, orders_per_hour=40.0, n_drivers=8, p_accident=0.1,
                                     p_refused=0.08, p_return_after_sign=0.08, p_partial_shortage=0.15,
                                     p_scale_under=0.15, conditions=False, start=1_780_300_800_000))
    orders = [(t, v) for t, v in log if t in ORDER_EVENT_TYPES]
    r.final = {oid: s["view"] for oid, s in fold_all(orders)[0].items()}  # type: ignore[attr-defined]
    rng = random.Random(3)
    for i in sorted(rng.sample(range(len(orders) - 10), 40), reverse=True):  # re-published a few records later
        orders.insert(i + rng.randint(1, 8), orders[i])
    ids = sorted(r.final)  # type: ignore[attr-defined]
    r.alerts = exposure_alerts(ids, orders[0][1]["event_time"])  # type: ignore[attr-defined]
    producer = SyncProducer(stack.kafka_bootstrap)
    logs = tmp_path_factory.mktemp("kpis")
    workers = [ProjectProcess(["worker", "--agents", "orders,kpi-exposures,kpi-orders,kpis", "--loglevel", "warning"],
                              r.env, logs / f"worker-{i}.log").start() for i in range(2)]
    try:
        for t, v in orders:
            producer.send(r.topics[ORDER_EVENTS.name], v["order_id"].encode(), r.codec.encode(t, v))
        for a in r.alerts:  # type: ignore[attr-defined]
            producer.send(r.topics[ALERTS.name], a["alert_id"].encode(), r.codec.encode("Alert", a))
        producer.flush()
        wait_for(lambda: r.lag("", ORDER_EVENTS) == 0, 120, "the order agents")
        views = list(read_topic(stack.kafka_bootstrap, r.topics[ORDER_STATE.name]))
        for rec in sorted(rng.sample(views, 30), key=lambda x: -x.offset):  # duplicates, older after newer
            producer.send(r.topics[ORDER_STATE.name], rec.key, rec.value)
        producer.flush()
        wait_for(lambda: r.lag("-kpi-exposures", ALERTS) == 0 and r.lag("-kpi-orders", ORDER_STATE, KPI_EXPOSURES) == 0
                 and r.lag("-kpis", KPI_CONTRIBUTIONS) == 0, 180, "the KPI agents to catch up")
        assert all(w.alive() for w in workers), [w.log_tail() for w in workers]
        f = r.flink_topics
        r.flink("kpi-exposures", {ALERTS.name: r.topics[ALERTS.name], KPI_EXPOSURES.name: f[KPI_EXPOSURES.name],
                                  DEAD_LETTERS.name: f[DEAD_LETTERS.name]})
        r.flink("kpi-orders", {ORDER_STATE.name: r.topics[ORDER_STATE.name], KPI_EXPOSURES.name: f[KPI_EXPOSURES.name],
                               KPI_CONTRIBUTIONS.name: f[KPI_CONTRIBUTIONS.name],
                               DEAD_LETTERS.name: f[DEAD_LETTERS.name]})
        r.flink("kpis", {KPI_CONTRIBUTIONS.name: f[KPI_CONTRIBUTIONS.name], KPIS.name: f[KPIS.name],
                         DEAD_LETTERS.name: f[DEAD_LETTERS.name]})
        yield r
    finally:
        for w in workers:
            w.stop()
        if not os.environ.get("KUAILV_KEEP_TEST_TOPICS"):
            delete_topics(stack.kafka_bootstrap, [*r.topics.values(), *r.flink_topics.values()])
            r.influx(f'DROP DATABASE "{r.influx_db}"', "POST")
            client = redis.Redis.from_url(stack.redis_url)
            keys = list(client.scan_iter(f"kpi{r.tag}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i:i + 500])


@pytest.fixture(scope="module")
def worker_figures(run: Run) -> dict[str, dict[str, Any]]:
    return latest(run.read(run.topics[KPIS.name]))


def test_worker_figures_are_the_oracles(run: Run, worker_figures: dict[str, dict[str, Any]]) -> None:
    exposed: dict[str, set[str]] = {}
    for a in run.alerts:  # type: ignore[attr-defined]
        if a["rule_id"] == "cold-chain-exposure":
            for o in a["evidence"]["orders"].split(","):
                exposed.setdefault(o, set()).add(a["alert_id"])
    windows: dict[str, dict[str, Any]] = {}
    for oid, view in run.final.items():  # type: ignore[attr-defined]
        facts = order_facts(view)
        for key in window_keys(facts):
            windows.setdefault(key, {})[oid] = contribution(facts, len(exposed.get(oid, ())))
    expected = {k: figures(k, v) for k, v in windows.items()}
    counted = {k: v for k, v in worker_figures.items() if v["orders"]}
    assert counted == expected
    assert sum(f["exposed_orders"] for k, f in counted.items() if k.startswith("city|")) == EXPOSED
    assert {k.split("|")[0] for k in counted} == {"city", "warehouse", "merchant", "driver"}
    assert not run.read(run.topics[DEAD_LETTERS.name])


def test_replay_gives_the_workers_figures(run: Run, worker_figures: dict[str, dict[str, Any]]) -> None:
    out = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--topic", "--projection", "kpis"], cwd=ROOT,
                         env={**os.environ, **run.env}, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    replayed = {}
    for line in out.stdout.splitlines():
        row = orjson.loads(line)
        assert row.pop("record_type") == "KpiFigures"
        replayed[row["window_key"]] = row
    assert replayed == worker_figures


def test_flink_gives_the_workers_figures(run: Run, worker_figures: dict[str, dict[str, Any]]) -> None:
    assert latest(run.read(run.flink_topics[KPIS.name])) == worker_figures
    assert not run.read(run.flink_topics[DEAD_LETTERS.name])


def test_redis_and_influx_hold_the_latest_figures(run: Run, worker_figures: dict[str, dict[str, Any]]) -> None:
    store = RedisKpis(redis.Redis.from_url(run.settings.redis_url), run.env["KUAILV_REDIS_PREFIX"])
    for f in worker_figures.values():
        assert store.figures(f["dimension"], f["dimension_id"], f["day"]) == f
    body = run.influx("SELECT last(orders), last(lines_full) FROM kpi GROUP BY dimension, id")
    points = {(s["tags"]["dimension"], s["tags"]["id"]): s["values"][0][1:] for s in body["results"][0]["series"]}
    expected: dict[tuple[str, str], list[int]] = {}
    for f in sorted(worker_figures.values(), key=lambda f: f["day"]):  # a series' last point: its latest day
        expected[(f["dimension"], f["dimension_id"])] = [f["orders"], f["lines_full"]]
    assert points == expected


def test_cli_prints_a_days_figures(run: Run, worker_figures: dict[str, dict[str, Any]]) -> None:
    day = min(f["day"] for f in worker_figures.values())
    env = {**os.environ, **run.env}
    out = subprocess.run([sys.executable, "-m", "cli.main", "kpis", "--dimension", "warehouse", "--day", day,
                          "--json"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    rows = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert rows == [worker_figures[k] for k in sorted(worker_figures) if k.startswith("warehouse|")
                    and k.endswith(f"|{day}")] and rows
    text = subprocess.run([sys.executable, "-m", "cli.main", "kpis", "--day", day], cwd=ROOT, env=env,
                          capture_output=True, timeout=60).stdout.decode()
    assert text.startswith(f"city all {day}: ") and "fulfilment " in text and "loss " in text
