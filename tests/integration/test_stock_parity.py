"""The worker's stock agent, the Flink job (``--projection stock``) and ``kuailv replay --projection stock`` agree
on low-stock alerts and replenishment suggestions, on one simulated log with duplicates.

Ten simulated days of stock movements (``simulate(config, stock=True)``: opening counts, shortages, picks,
restocked returns, the current policy's receipts, recounts) plus 60 re-published duplicates go to a private
``kuailv.stock.v1``. The worker (agent ``stock``) folds them into Redis, InfluxDB and its private output topics;
the PyFlink job folds the worker's input into its own output topics; the replay reads the same input. All three
must publish the same alerts and suggestions, and the worker's Redis levels must be the replay's final states.
"""

from __future__ import annotations

import functools
import os
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
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, DEAD_LETTERS, REPLENISHMENT_SUGGESTIONS, STOCK
from streams.kafka_lag import group_lag
from streams.replay import read_topic
from streams.sinks.redis_stock import RedisStock
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ROOT, ProjectProcess
from tests.unit.projections.stock_log import movements

pytestmark = pytest.mark.integration
DUPLICATES = 60


class Run:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.settings = settings
        self.codec = AvroCodec(epoch_ms=True)
        self.topics = private_topics(settings.kafka_bootstrap, self.tag,
                                     [STOCK, ALERTS, REPLENISHMENT_SUGGESTIONS, DEAD_LETTERS])
        self.flink_topics = private_topics(settings.kafka_bootstrap, f"{self.tag}-flink",
                                           [ALERTS, REPLENISHMENT_SUGGESTIONS, DEAD_LETTERS])
        self.prefix = f"stk{self.tag}"
        self.influx_db = f"kuailv_stock_{self.tag}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-stk-{self.tag}",
                    "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.05",
                    "KUAILV_INFLUX_DB": self.influx_db, "KUAILV_TOPIC_RENAMES": renames_env(self.topics)}
        self.moves: list[dict[str, Any]] = []

    def influx(self, q: str, db: str | None = None) -> dict[str, Any]:
        query = {"q": q, **({"db": db} if db else {})}
        data = urllib.parse.urlencode(query).encode()
        with urllib.request.urlopen(f"{self.settings.influx_url}/query", data=data, timeout=10) as resp:
            return orjson.loads(resp.read())

    def flink_job(self) -> subprocess.Popen:
        renames = [f"{STOCK.name}={self.topics[STOCK.name]}"]
        renames += [f"{name}={actual}" for name, actual in self.flink_topics.items()]
        cmd = [str(flink_env.python_executable()), "-m", "jobs.timed_projection_job", "--projection", "stock",
               "--profile", "test", "--local", "--mode", "thread", "--bounded", "--no-restart", "--parallelism", "2",
               "--group", f"flink-stk-{self.tag}", "--checkpoint-ms", "2000",
               *(a for r in renames for a in ("--rename", r))]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def published(self, topic: str) -> list[dict[str, Any]]:
        return [self.codec.decode(r.value).value for r in read_topic(self.settings.kafka_bootstrap, topic)]

    @functools.cached_property
    def replayed(self) -> tuple[dict[str, Any], ...]:
        out = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--topic", "--projection", "stock"],
                             cwd=ROOT, env={**os.environ, **self.env}, capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        return tuple(orjson.loads(line) for line in out.stdout.splitlines())


@pytest.fixture(scope="module")
def run(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    r = Run(stack)
    r.influx(f'CREATE DATABASE "{r.influx_db}"')
    r.moves = movements(duplicates=DUPLICATES)
    producer = SyncProducer(stack.kafka_bootstrap)
    worker = ProjectProcess(["worker", "--agents", "stock", "--loglevel", "warning"], r.env,
                            tmp_path_factory.mktemp("stock") / "worker.log").start()
    try:
        for m in r.moves:
            producer.send(r.topics[STOCK.name], f"{m['warehouse_id']}/{m['sku']}".encode(),
                          r.codec.encode("StockMovement", m))
        producer.flush()
        wait_for(lambda: group_lag(stack.kafka_bootstrap, f"kuailv-stk-{r.tag}-stock", [r.topics[STOCK.name]]) == 0,
                 120, "the stock agent to catch up")
        assert worker.alive(), worker.log_tail()
        job = r.flink_job()
        out, _ = job.communicate(timeout=400)
        assert job.returncode == 0, out[-6000:]
        yield r
    finally:
        worker.stop()
        if not os.environ.get("KUAILV_KEEP_TEST_TOPICS"):
            delete_topics(stack.kafka_bootstrap, [*r.topics.values(), *r.flink_topics.values()])
        r.influx(f'DROP DATABASE "{r.influx_db}"')


def latest_alerts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["alert_id"]: a for a in records}


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {s["suggestion_id"]: s for s in records}
    assert len(out) == len(records), "a suggestion was published twice"
    return out


def test_alerts_and_suggestions_agree_in_every_engine(run: Run) -> None:
    rows = [dict(row) for row in run.replayed]
    replay_alerts = latest_alerts([r for r in rows if r.pop("record_type") == "Alert"])
    replay_suggestions = by_id([r for r in (dict(x) for x in run.replayed) if r.pop("record_type")
                                == "ReplenishmentSuggestion"])
    worker_alerts = latest_alerts(run.published(run.topics[ALERTS.name]))
    flink_alerts = latest_alerts(run.published(run.flink_topics[ALERTS.name]))
    assert len(replay_alerts) > 5 and {a["rule_id"] for a in replay_alerts.values()} == {"low-stock"}
    assert worker_alerts == replay_alerts == flink_alerts
    worker_suggestions = by_id(run.published(run.topics[REPLENISHMENT_SUGGESTIONS.name]))
    flink_suggestions = by_id(run.published(run.flink_topics[REPLENISHMENT_SUGGESTIONS.name]))
    assert len(replay_suggestions) > 50
    assert {s["reason"] for s in replay_suggestions.values()} == {"DAILY_PLAN", "BELOW_REORDER_POINT"}
    assert worker_suggestions == replay_suggestions == flink_suggestions
    assert run.published(run.topics[DEAD_LETTERS.name]) == []
    assert run.published(run.flink_topics[DEAD_LETTERS.name]) == []


def test_worker_levels_in_redis_and_influx_are_the_folded_stock(run: Run) -> None:
    on_hand: dict[str, float] = {}
    seen: set[str] = set()
    for m in run.moves:  # the stock by hand: duplicates by event id ignored
        if m["event_id"] in seen:
            continue
        seen.add(m["event_id"])
        key = f"{m['warehouse_id']}/{m['sku']}"
        q = m["quantity"]
        on_hand[key] = q if m["kind"] == "COUNT" else round(on_hand.get(key, 0.0) + {
            "RECEIPT": q, "RETURN": q, "PICK": -q, "SHORTAGE": 0.0}[m["kind"]], 6)
    client = redis.Redis.from_url(run.settings.redis_url)
    try:
        store = RedisStock(client, run.prefix)
        live = {f"{wh}/{sku}": level["on_hand"] for wh in {m["warehouse_id"] for m in run.moves}
                for sku, level in store.levels(wh).items()}
    finally:
        client.close()
    assert live == pytest.approx(on_hand) and len(live) == 96
    # one point per movement; movements of one key in the same millisecond (a recount and its pick) are one point,
    # the level after the last of them
    instants = {(m["warehouse_id"], m["sku"], m["event_time"]) for m in run.moves}
    points = run.influx("SELECT count(on_hand) FROM stock_level", run.influx_db)
    assert points["results"][0]["series"][0]["values"][0][1] == len(instants) < len(seen)
