"""The worker, the Flink jobs and ``kuailv replay`` agree on geofence transitions, ETAs and alerts,
on one simulated log.

A seeded simulation (orders, GPS, sensors with excursions, accidents, shortages, scale
deviations) goes to private topics, with duplicates, a late ping and a stale sensor reading.
The worker (orders, geofences, alerts) folds it; the PyFlink jobs (``jobs/timed_projection_job.py``,
geofences and alerts, bounded, into their own output topics) fold the same input topics; then the
replay of the same topics through the same projections must give the same transitions (ids and
order per driver), the same ETAs and the same latest record of every alert as both.

The order events are produced first and the telemetry once the order worker has published the
van orders, as live (a van is dispatched before it drives).
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from config.settings import Settings
from infra import flink_env
from projections.order_state import fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.van_orders import van_order_records
from schemas.codec import AvroCodec
from schemas.topics import (
    ALERTS,
    DEAD_LETTERS,
    FLEET,
    GEOFENCE_TRANSITIONS,
    GPS,
    ORDER_ETAS,
    ORDER_EVENTS,
    ORDER_STATE,
    REDISPATCH_SUGGESTIONS,
    ROAD_CONDITIONS,
    SENSORS,
    VAN_ORDERS,
)
from simulator.config import SimulationConfig
from simulator.traffic import event_log
from streams.kafka_lag import group_lag
from streams.replay import read_topic
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ROOT, ProjectProcess
from trainer.pipeline import TrainOptions
from trainer.pipeline import run as train

pytestmark = pytest.mark.integration
KEYS = {"GpsPing": "driver_id", "SensorReading": "device_id", "RoadConditions": "driver_id"}
TELEMETRY_TOPICS = {"GpsPing": GPS, "SensorReading": SENSORS, "RoadConditions": ROAD_CONDITIONS}


class Run:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.settings = settings
        self.topics = private_topics(settings.kafka_bootstrap, self.tag, [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, GPS,
                                                                          SENSORS, ROAD_CONDITIONS,
                                                                          GEOFENCE_TRANSITIONS, ALERTS,
                                                                          ORDER_ETAS, DEAD_LETTERS, FLEET,
                                                                          REDISPATCH_SUGGESTIONS])
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-par-{self.tag}",
                    "KUAILV_REDIS_PREFIX": f"par{self.tag}", "KUAILV_WORKER_BATCH_SECONDS": "0.05",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics)}
        self.codec = AvroCodec(epoch_ms=True)
        self.model_env: dict[str, str] = {}  # the trained model and stop order every engine runs (run fixture)
        self.flink_topics = private_topics(settings.kafka_bootstrap, f"{self.tag}-flink",
                                           [GEOFENCE_TRANSITIONS, ALERTS, ORDER_ETAS, DEAD_LETTERS, FLEET,
                                            REDISPATCH_SUGGESTIONS])

    def flink_job(self, projection: str, inputs: tuple[Any, ...], parallelism: int) -> subprocess.Popen:
        """Inputs from the worker's topics (the fleet job: the worker's kuailv.fleet.v1, the same log as the
        worker's fleet agent and the replay), outputs to the Flink topics."""
        renames = [f"{s.name}={self.topic(s)}" for s in inputs]
        renames += [f"{name}={actual}" for name, actual in self.flink_topics.items() if name not in
                    {s.name for s in inputs}]
        cmd = [str(flink_env.python_executable()), "-m", "jobs.timed_projection_job", "--projection", projection,
               "--profile", "test", "--local", "--mode", "thread", "--bounded", "--no-restart",
               "--parallelism", str(parallelism), "--group", f"flink-par-{self.tag}-{projection}",
               "--checkpoint-ms", "2000", *(a for r in renames for a in ("--rename", r))]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **self.model_env})

    def flink_published(self, spec: Any) -> list[dict[str, Any]]:
        return [self.codec.decode(r.value).value
                for r in read_topic(self.settings.kafka_bootstrap, self.flink_topics[spec.name])]

    def topic(self, spec: Any) -> str:
        return self.topics[spec.name]

    def lag(self, suffix: str, *specs: Any) -> int:
        group = f"kuailv-par-{self.tag}{suffix}"
        return group_lag(self.settings.kafka_bootstrap, group, [self.topic(s) for s in specs])

    def published(self, spec: Any) -> list[dict[str, Any]]:
        return [self.codec.decode(r.value).value for r in read_topic(self.settings.kafka_bootstrap, self.topic(spec))]

    def replay(self, projection: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self._replay(projection)]  # copies: callers pop fields

    @functools.cache  # noqa: B019 (one Run per module)
    def _replay(self, projection: str) -> tuple[dict[str, Any], ...]:
        out = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--topic", "--projection", projection],
                             cwd=ROOT, env={**os.environ, **self.env}, capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        return tuple(orjson.loads(line) for line in out.stdout.splitlines())


def silent_window(orders: list[tuple[str, dict[str, Any]]]) -> tuple[str, tuple[int, int]]:
    """A driver and 15 minutes in which its GPS goes quiet with an order on board (GPS silent)."""
    states: dict[str, Any] = {}
    on_board: dict[tuple[str, str], int] = {}
    for t, v in orders:
        before = states.get(v["order_id"])
        result = fold(before, t, v, trace=True)
        previous = before["view"] if before else None
        for view in result.views:
            for vo in van_order_records(previous, view):
                key = (vo["driver_id"], vo["order_id"])
                if vo["state"] == "ON_BOARD":
                    on_board[key] = vo["event_time"]
                elif key in on_board and vo["event_time"] - on_board[key] >= 40 * 60_000:
                    return vo["driver_id"], (on_board[key] + 5 * 60_000, on_board[key] + 20 * 60_000)
            previous = view
        states[v["order_id"]] = result.state
    raise AssertionError("no order stayed 40 minutes on a van")


@pytest.fixture(scope="module")
def run(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    r = Run(stack)
    log = event_log(SimulationConfig(seed=7, orders=60, orders_per_hour=40.0, n_drivers=8,
                                     sensor_excursion_per_hour=0.5, p_accident=0.05, p_scale_under=0.1,
                                     start=1_780_300_800_000))
    rng = random.Random(5)
    orders = [(t, v) for t, v in log if t in ORDER_EVENT_TYPES]
    telemetry = [(t, v) for t, v in log if t in KEYS]
    r.silent_driver, quiet = silent_window(orders)  # type: ignore[attr-defined]
    r.quiet = quiet  # type: ignore[attr-defined]
    telemetry = [(t, v) for t, v in telemetry if not (t == "GpsPing" and v["driver_id"] == r.silent_driver
                                                      and quiet[0] <= v["event_time"] < quiet[1])]
    for i in sorted(rng.sample(range(len(telemetry) - 10), 50), reverse=True):  # re-published a few records later
        telemetry.insert(i + rng.randint(1, 8), telemetry[i])
    pings = [v for t, v in telemetry if t == "GpsPing"]
    late = dict(pings[len(pings) // 2], event_id=f"late-{r.tag}")
    late["event_time"] -= 3_600_000  # an hour behind its driver: LATE_EVENT
    telemetry.append(("GpsPing", late))
    # Every engine loads the same trained model (a small one, trained here: seeded, ~20 s) and plans the stop order
    # with its travel times: the ETAs, risks, likely-late notices and stop orders below come from it.
    model_root = tmp_path_factory.mktemp("model")
    train(TrainOptions(days=2.0, orders_per_hour=20.0, max_iter=60, seed=3), model_root)
    r.model_env = {"KUAILV_ETA_MODEL": str(model_root), "KUAILV_ROUTE_PLANNER": "auto"}
    r.env.update(r.model_env)
    producer = SyncProducer(stack.kafka_bootstrap)
    worker = ProjectProcess(["worker", "--agents", "orders,geofences,alerts,fleet", "--loglevel", "warning"], r.env,
                            tmp_path_factory.mktemp("parity") / "worker.log").start()
    try:
        for t, v in orders:
            producer.send(r.topic(ORDER_EVENTS), v["order_id"].encode(), r.codec.encode(t, v))
        producer.flush()
        wait_for(lambda: r.lag("", ORDER_EVENTS) == 0 and r.lag("-geofences", VAN_ORDERS) == 0, 120,
                 "the order worker's van orders, consumed by the geofence agent")
        # Live, a van's road conditions reach the worker within the lateness bound of its pings. Here everything is
        # produced at once and the worker catches up, reading a GPS partition hours ahead of its conditions
        # partition; so, as for the van orders, the conditions go first (docs/models.md: the catch-up caveat).
        conditions = [(t, v) for t, v in telemetry if t == "RoadConditions"]
        telemetry = [(t, v) for t, v in telemetry if t != "RoadConditions"]
        for t, v in conditions:
            producer.send(r.topic(ROAD_CONDITIONS), v["driver_id"].encode(), r.codec.encode(t, v))
        producer.flush()
        wait_for(lambda: r.lag("-geofences", ROAD_CONDITIONS) == 0, 120, "the road conditions, consumed")
        for t, v in telemetry:
            producer.send(r.topic(TELEMETRY_TOPICS[t]), v[KEYS[t]].encode(), r.codec.encode(t, v))
        producer.flush()
        wait_for(lambda: r.lag("-geofences", GPS, VAN_ORDERS, ROAD_CONDITIONS) == 0
                 and r.lag("-alerts", ORDER_EVENTS, SENSORS) == 0 and r.lag("-fleet", FLEET) == 0, 180,
                 "the geofence, alert and fleet agents to catch up")
        r.worker = worker  # type: ignore[attr-defined]
        jobs = [r.flink_job("geofences", (GPS, VAN_ORDERS, ROAD_CONDITIONS), 2),
                r.flink_job("alerts", (ORDER_EVENTS, SENSORS), 1)]
        jobs[0].wait(300)  # two JVMs at a time on two cores
        jobs.append(r.flink_job("fleet", (FLEET,), 1))
        for job in jobs:
            out, _ = job.communicate(timeout=300)
            assert job.returncode == 0, out[-6000:]
        yield r
    finally:
        worker.stop()
        if not os.environ.get("KUAILV_KEEP_TEST_TOPICS"):  # to look at them afterwards
            delete_topics(stack.kafka_bootstrap, [*r.topics.values(), *r.flink_topics.values()])


def test_geofence_transitions_agree(run: Run) -> None:
    live = run.published(GEOFENCE_TRANSITIONS)
    replayed = [row for row in run.replay("geofences") if row.pop("record_type") == "GeofenceTransition"]
    assert len(live) > 20, "the simulation should cross warehouse and customer fences"
    assert {t["fence_kind"] for t in live} >= {"WAREHOUSE", "CUSTOMER_SITE"}

    def per_driver(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in rows:
            out.setdefault(t["driver_id"], []).append(t["transition_id"])
        return out

    a, b = per_driver(live), per_driver(replayed)
    for driver in sorted(set(a) | set(b)):
        x, y = a.get(driver, []), b.get(driver, [])
        first = next((i for i in range(max(len(x), len(y))) if x[i:i + 1] != y[i:i + 1]), None)
        assert first is None, f"{driver} differs at #{first}: live {x[first:first + 3]}, replay {y[first:first + 3]}"
    assert sorted(live, key=lambda t: t["transition_id"]) == sorted(replayed, key=lambda t: t["transition_id"])


def test_etas_agree(run: Run) -> None:
    """The current estimate per order, as a consumer of the compacted topic keeps it."""
    def latest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per order, the newest record of its newest dispatch (two vans' records interleave by timing):
        highest (dispatch_count, updated_at); a record that only adds a stage time keeps computed_at."""
        out: dict[str, dict[str, Any]] = {}
        for e in rows:
            cur = out.get(e["order_id"])
            if cur is None or (e["dispatch_count"], e["updated_at"]) > (cur["dispatch_count"], cur["updated_at"]):
                out[e["order_id"]] = e
        return out

    live = latest(run.published(ORDER_ETAS))
    replayed = latest([e for e in run.replay("geofences") if e.pop("record_type") == "OrderEta"])
    assert len(live) > 20 and all(e["estimator"].startswith("hgb/") or e["estimator"] == "geofence/arrival"
                                  for e in live.values())
    differ = {k: (live.get(k), replayed.get(k)) for k in set(live) | set(replayed) if live.get(k) != replayed.get(k)}
    assert not differ, orjson.dumps(differ).decode()


def test_the_model_predicts_in_every_engine_alike(run: Run) -> None:
    """Online inference: the worker's estimates carry the model's risk, some orders crossed into "likely late",
    the drivers' statuses carry a planned stop order, and the replay computes every record the same."""
    live = run.published(ORDER_ETAS)
    risks = [e["late_risk"] for e in live if e["estimator"].startswith("hgb/")]
    assert len(risks) > 50 and all(0.0 <= r <= 1.0 for r in risks) and max(risks) > 0.5, risks[:20]
    replayed = [e for e in run.replay("geofences") if e.pop("record_type") == "OrderEta"]
    def canonical(rows: list[dict[str, Any]]) -> set[bytes]:
        return {orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in rows}

    assert canonical(live) == canonical(replayed)  # every estimate, not only the latest
    models = {e["estimator"] for e in live if e["estimator"].startswith("hgb/")}
    assert len(models) == 1  # one model version in every worker thread
    late = [a for a in run.published(ALERTS) if a["rule_id"] == "likely-late"]
    assert late and {a["evidence"]["estimator"] for a in late if a["status"] == "OPEN"} == models
    routes = [s["stop_order"] for s in run.published(FLEET) if "stop_order" in s and len(s["stop_order"]) > 1]
    assert routes, "vans with two stops or more carry the suggested order"


def test_alerts_agree(run: Run) -> None:
    live: dict[str, dict[str, Any]] = {}
    for a in run.published(ALERTS):
        live[a["alert_id"]] = a
    replayed = {a["alert_id"]: a for a in run.replay("alerts")}
    nearby = {k: v for k, v in live.items()  # the geofence agent's: notices, gps-silent, the model's likely-late
              if v["rule_id"] in ("driver-nearby", "arriving-soon", "gps-silent", "likely-late")}
    exposure = {k: v for k, v in live.items()  # the fleet agent's: a van's cold chain
                if v["rule_id"] == "cold-chain-exposure" or (v["rule_id"] == "cold-chain-breach" and v["vehicle_id"])}
    rules = {a["rule_id"] for a in live.values()}
    assert {"stock-shortage", "weight-deviation", "cold-chain-breach", "driver-nearby", "arriving-soon"} <= rules, rules
    assert {k: v for k, v in live.items() if k not in nearby and k not in exposure} == replayed
    fleet_alerts = {a["alert_id"]: a for a in run.replay("fleet") if a.pop("record_type") == "Alert"}
    assert exposure == fleet_alerts
    geo_alerts = {a["alert_id"]: a for a in run.replay("geofences") if a.pop("record_type") == "Alert"}
    differ = {k: (nearby.get(k), geo_alerts.get(k)) for k in set(nearby) | set(geo_alerts)
              if nearby.get(k) != geo_alerts.get(k)}
    assert not differ, orjson.dumps(differ).decode()


def test_gps_silence_opened_by_the_watermark_and_resolved_by_the_next_ping(run: Run) -> None:
    records = [a for a in run.published(ALERTS) if a["rule_id"] == "gps-silent"]
    latest = {a["alert_id"]: a for a in records}
    quiet_from, quiet_to = run.quiet  # type: ignore[attr-defined]
    mine = [a for a in records if a["driver_id"] == run.silent_driver  # type: ignore[attr-defined]
            and quiet_from - 10_000 <= int(a["evidence"]["last_ping_at"]) < quiet_from]
    assert [a["status"] for a in mine] == ["OPEN", "RESOLVED"], mine
    assert mine[1]["evidence"]["cleared_by"] == "ping" and quiet_to <= mine[1]["resolved_at"] < quiet_to + 10_000
    # the vans stopped after an accident with their goods on board are silent too, until re-dispatch
    assert all(a["status"] == "RESOLVED" for a in latest.values())


def test_late_ping_is_dead_lettered_once(run: Run) -> None:
    dead = [d for d in run.published(DEAD_LETTERS) if d["reason_code"] == "LATE_EVENT"]
    assert [d["event_id"] for d in dead if d["source_topic"] == GPS.name] == [f"late-{run.tag}"]


def _latest_etas(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in rows:
        out.setdefault((e["order_id"], e["dispatch_count"]), []).append(e)
    return out


def test_flink_jobs_agree_with_replay(run: Run) -> None:
    """Transitions per driver in order, every ETA per order and dispatch in order, the latest record of
    every alert (SLA, cold chain, notices, gps-silent), and the late ping's dead letter."""
    geo = run.replay("geofences")
    kinds = {"GeofenceTransition": "transition", "OrderEta": "eta", "Alert": "alert", "DriverStatus": "status"}
    replayed: dict[str, list[dict[str, Any]]] = {}
    for row in geo:
        replayed.setdefault(kinds[row.pop("record_type")], []).append(row)

    def per_driver(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in rows:
            out.setdefault(t["driver_id"], []).append(t["transition_id"])
        return out

    flink_transitions = run.flink_published(GEOFENCE_TRANSITIONS)
    assert len(flink_transitions) > 20
    assert per_driver(flink_transitions) == per_driver(replayed["transition"])
    assert sorted(flink_transitions, key=lambda t: t["transition_id"]) == \
        sorted(replayed["transition"], key=lambda t: t["transition_id"])
    assert _latest_etas(run.flink_published(ORDER_ETAS)) == _latest_etas(replayed["eta"])
    assert len(replayed["status"]) > 20
    flink_alerts = {a["alert_id"]: a for a in run.flink_published(ALERTS)}
    expected = {a["alert_id"]: a for a in run.replay("alerts")}
    expected.update({a["alert_id"]: a for a in replayed["alert"]})
    expected.update({a["alert_id"]: a for a in run.replay("fleet") if a.pop("record_type") == "Alert"})
    assert {a["rule_id"] for a in flink_alerts.values()} >= {"stock-shortage", "cold-chain-breach", "driver-nearby"}
    differ = {k: (flink_alerts.get(k), expected.get(k)) for k in set(flink_alerts) | set(expected)
              if flink_alerts.get(k) != expected.get(k)}
    assert not differ, orjson.dumps(differ).decode()[:3000]
    dead = [d for d in run.flink_published(DEAD_LETTERS) if d["reason_code"] == "LATE_EVENT"]
    assert [d["event_id"] for d in dead if d["source_topic"] == GPS.name] == [f"late-{run.tag}"]


def test_redispatch_suggestions_agree_in_every_engine(run: Run) -> None:
    """The accidents of the simulation: the worker's fleet agent, the Flink fleet job and the replay of the
    worker's kuailv.fleet.v1 propose the same drivers; the Flink geofence job's driver statuses are the
    worker's (per driver, in order)."""
    live = {s["suggestion_id"]: s for s in run.published(REDISPATCH_SUGGESTIONS)}
    assert live, "the simulation has accidents (p_accident=0.05)"
    assert any(s["to_driver_id"] for s in live.values()), live
    fleet_rows = run.replay("fleet")
    replayed = {s["suggestion_id"]: s for s in fleet_rows if s.pop("record_type") == "RedispatchSuggestion"}
    flink = {s["suggestion_id"]: s for s in run.flink_published(REDISPATCH_SUGGESTIONS)}
    assert live == replayed == flink

    def statuses(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if "load_kg" in row:
                out.setdefault(row["driver_id"], []).append(row)
        return out

    worker = statuses(run.published(FLEET))
    assert worker and statuses(run.flink_published(FLEET)) == worker
