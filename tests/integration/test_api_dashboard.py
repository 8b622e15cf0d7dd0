"""The dashboard endpoints (issue 11) against the real stack: ``kuailv serve`` over real HTTP, every answer checked
against /openapi.json (``api_harness.ApiClient``), reading a private slice of Redis, Kafka and InfluxDB.

To stay fast no worker runs: the fixture writes what the workers would have written, through the same store
classes (order views folded from simulated stories, driver fixes, the fleet view, alerts, stock levels and
suggestions, KPI figures and their ``kpi``/``kpi_intraday`` points), and produces order events, GPS pings and
dead letters on the slice's topics for the pipeline's health.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import Settings
from projections import kpis as kpi_formulas
from projections.fleet import FleetContext, step
from projections.kpis import nearest_rank
from projections.order_state import fold_all
from projections.order_step import projection_record
from schemas.topics import DEAD_LETTERS, GPS, ORDER_EVENTS
from simulator.events import T0, Event
from streams import queries
from streams.kpi_agent import influx_lines
from streams.sinks.influx import InfluxWriter
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_fleet import RedisFleet
from streams.sinks.redis_kpis import RedisKpis
from streams.sinks.redis_orders import OrderWrite, RedisOrderStore
from streams.sinks.redis_positions import RedisDriverPositions
from streams.sinks.redis_stock import RedisStock
from tests.integration.api_harness import ApiClient, Slice, serve, story

pytestmark = pytest.mark.integration
PORT = 28014
WH = "WH-BJ-CY-01"
# letter -> (customer, ending, cut after, driver)
STORIES = {"A": ("CUST-A", "signed", None, None), "B": ("CUST-A", "redispatched", None, None),
           "C": ("CUST-B", "cancelled", None, None), "D": ("CUST-B", "out_of_stock", None, None),
           "E": ("CUST-B", "refused", None, None), "F": ("CUST-B", "signed", "OrderDispatched", "DRV-A"),
           "G": ("CUST-B", "signed", "OrderCreated", None), "H": ("CUST-B", "signed", "PickingStarted", None)}


@dataclass
class Dash:
    sl: Slice
    http: ApiClient
    settings: Settings
    audit_url: str
    events: dict[str, list[Event]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pings: int = 0

    def oid(self, letter: str) -> str:
        return f"KLDASH{self.sl.tag}{letter}"

    def get(self, path: str, role: str, tenant: str | None = None) -> tuple[int, Any]:
        return self.http.get(path, self.http.token(role, tenant))

    def ping(self, driver: str, vehicle: str, at: int, count: int) -> None:
        for n in range(count):
            self.pings += 1
            value = {"event_id": f"{self.sl.tag}-p{self.pings}", "driver_id": driver, "vehicle_id": vehicle,
                     "event_time": at + n * 1000, "producer": "driver-app/test", "lat": 39.93, "lng": 116.45,
                     "speed_kmh": 25.0, "heading_deg": 90.0, "accuracy_m": 5.0}
            self.sl.producer.send(self.sl.topics[GPS.name], driver.encode(), self.sl.codec.encode("GpsPing", value))
        self.sl.producer.flush()


def alert(rule: str, severity: str, subject: str, *, order: str | None = None, driver: str | None = None,
          vehicle: str | None = None) -> dict[str, Any]:
    return {"alert_id": f"{rule}/{subject}", "rule_id": rule, "rule_version": 1, "severity": severity,
            "status": "OPEN", "order_id": order, "driver_id": driver, "vehicle_id": vehicle, "warehouse_id": WH,
            "customer_id": None, "opened_at": T0, "updated_at": T0, "resolved_at": None, "occurrences": 1,
            "message": rule, "evidence": {}, "location": None, "audience": ["OPERATOR"]}


def seed_orders(d: Dash) -> None:
    store = RedisOrderStore(d.sl.redis, d.sl.prefix, d.sl.codec)
    for letter, (customer, ending, upto, driver) in STORIES.items():
        oid = d.oid(letter)
        events = story(oid, customer, ending=ending, warehouse=WH, driver=driver, upto=upto)
        (state,) = fold_all(events)[0].values()
        assert store.save([OrderWrite(oid, state, projection_record(d.sl.codec, state)[1])]) == []
        d.sl.send(oid, events)  # on the slice's order-event topic too: nobody consumes it (consumer lag)
        d.events[letter], d.views[letter] = events, state["view"]


def seed_fleet_alerts_stock(d: Dash) -> None:
    r, p = d.sl.redis, d.sl.prefix
    fixes = [{"driver_id": drv, "vehicle_id": van, "event_time": T0 + n * 1000, "lat": 39.9 + n / 100,
              "lng": 116.4, "speed_kmh": 20.0 + n, "heading_deg": 0.0, "event_id": f"fix-{n}"}
             for n, (drv, van) in enumerate((("DRV-A", "VAN-A"), ("DRV-B", "VAN-B"), ("DRV-C", "VAN-C")))]
    assert RedisDriverPositions(r, p).save(fixes) == 3
    status = {"driver_id": "DRV-A", "vehicle_id": "VAN-A", "lat": 39.9, "lng": 116.4, "at": T0, "load_kg": 12.5,
              "orders_on_board": [d.oid("F")]}
    state, _, _ = step(None, [("DriverStatus", status)], FleetContext())
    d.alerts = {a["alert_id"]: a for a in (
        alert("cold-chain-breach", "CRITICAL", "vehicle/VAN-A/CHILLED", vehicle="VAN-A"),
        alert("cold-chain-exposure", "WARNING", "vehicle/VAN-C/CHILLED/trip-1", vehicle="VAN-C"),
        alert("gps-silent", "WARNING", "driver/DRV-B", driver="DRV-B", vehicle="VAN-B"),  # not a cold-chain rule
        alert("late-delivery", "CRITICAL", f"order/{d.oid('F')}", order=d.oid("F"), driver="DRV-A"))}
    sku_low, sku_ok = (ln["sku"] for ln in d.views["A"]["lines"][:2])
    level = {"warehouse_id": WH, "unit": "KG", "day": "20260601", "picked_today": 1.0, "short_today": 0.0,
             "received_today": 0.0, "returned_today": 0.0, "updated_at": T0}
    suggestion = {"suggestion_id": f"{WH}/{sku_low}@e1", "stock_key": f"{WH}/{sku_low}", "warehouse_id": WH,
                  "sku": sku_low, "unit": "KG", "reason": "BELOW_REORDER_POINT", "decided_at": T0, "on_hand": 2.0,
                  "forecast_daily": 3.0, "forecast_std": 1.0, "history_days": 14, "service_level": 0.95,
                  "lead_time_days": 2.0, "lead_time_demand": 6.0, "safety_stock": 4.0, "reorder_point": 10.0,
                  "order_up_to": 16.0, "suggested_quantity": 14.0, "rule_version": 1, "policy": "rop"}
    pipe = r.pipeline()
    RedisFleet(r, p).save([("fleet", state)], pipe)
    RedisAlerts(r, p).publish(d.alerts.values(), pipe)
    pipe.hset(f"{p}:stock:{WH}", mapping={
        sku_low: orjson.dumps({**level, "sku": sku_low, "on_hand": 2.0, "reorder_point": 10.0}),
        sku_ok: orjson.dumps({**level, "sku": sku_ok, "on_hand": 50.0, "reorder_point": 10.0})})
    RedisStock(r, p).save_suggestions([suggestion], pipe)
    pipe.execute()


def seed_kpis(d: Dash) -> list[dict[str, Any]]:
    """Each window's figures after each order (oldest update first), in Redis and both InfluxDB measurements."""
    facts = sorted((kpi_formulas.order_facts(v) for v in d.views.values()), key=lambda f: f["updated_at"])
    entries: dict[str, dict[str, Any]] = {}
    updates = []
    for f in facts:
        for key in kpi_formulas.window_keys(f):
            entries.setdefault(key, {})[f["order_id"]] = kpi_formulas.contribution(f, 0)
            updates.append(kpi_formulas.figures(key, entries[key]))
    pipe = d.sl.redis.pipeline()
    RedisKpis(d.sl.redis, d.sl.prefix).save_figures(updates, pipe)
    pipe.execute()
    writer = InfluxWriter(d.settings.influx_url, d.sl.influx_db)
    try:
        writer.write(influx_lines(updates))
    finally:
        writer.close()
    return updates


def seed_pipeline(d: Dash) -> None:
    for n in range(2):
        value = {"source_topic": d.sl.topics[GPS.name], "source_partition": n, "source_offset": 40 + n,
                 "source_timestamp": None, "key": None, "value": b"junk", "reason_code": "NOT_AVRO_FRAMED",
                 "reason": f"junk {n}", "event_id": None, "record_type": None, "schema_id": None,
                 "consumer": "test", "failed_at": T0 + n}
        d.sl.producer.send(d.sl.topics[DEAD_LETTERS.name], None, d.sl.codec.encode("DeadLetter", value))
    d.ping("DRV-A", "VAN-A", T0, 20)


@pytest.fixture(scope="module")
def dash(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    sl = Slice(stack, "dash")
    logs: Path = tmp_path_factory.mktemp("dash")
    audit_url = f"sqlite:///{logs / 'audit.sqlite'}"
    sl.env["KUAILV_AUDIT_STORE"] = audit_url
    settings = dataclasses.replace(stack, redis_prefix=sl.prefix, influx_db=sl.influx_db,
                                   consumer_group=sl.env["KUAILV_CONSUMER_GROUP"], topic_renames=dict(sl.topics))
    d = Dash(sl, ApiClient(PORT), settings, audit_url)
    server = None
    try:
        seed_orders(d)
        seed_fleet_alerts_stock(d)
        seed_pipeline(d)
        server = serve(PORT, sl.env, logs)
        yield d
    finally:
        if server is not None:
            server.stop()
        sl.close()


def test_the_funnel_counts_are_kuailv_stats_and_the_stage_times_come_from_the_orders(dash: Dash) -> None:
    status, body = dash.get("/dashboard/funnel", "customer_service")
    assert status == 200, body
    by_status = queries.progress(dash.settings)["by_status"]
    assert {k: v for k, v in body["counts"].items() if v} == by_status and len(body["counts"]) == 12
    assert by_status == {"SIGNED": 2, "CANCELLED": 1, "OUT_OF_STOCK": 1, "RETURNING": 1, "DELIVERING": 1,
                         "CREATED": 1, "PICKING": 1}
    assert body["sampled"] == len(STORIES)
    stages = {s["stage"]: s for s in body["stages"]}

    def at(letter: str, event_type: str) -> int:
        return int([e["event_time"] for t, e in dash.events[letter] if t == event_type][-1])

    created = at("A", "PaymentConfirmed") - at("A", "OrderCreated")  # every story: the same steps
    assert stages["CREATED"] == {"stage": "CREATED", "medianMs": created, "p90Ms": created, "orders": 7}
    legs = sorted([at("A", "OrderDelivered") - at("A", "OrderDispatched"),
                   at("B", "OrderDelivered") - at("B", "OrderDispatched"),
                   at("E", "DeliveryRefused") - at("E", "OrderDispatched")])
    assert stages["DELIVERING"]["orders"] == 3 and stages["DELIVERING"]["medianMs"] == nearest_rank(legs, 50)
    assert stages["PICKING"]["orders"] == 3  # A, E and F; B's first dispatch time is gone (re-dispatched)
    assert stages["SIGNED"] == {"stage": "SIGNED", "medianMs": None, "p90Ms": None, "orders": 0}
    assert dash.get("/dashboard/funnel", "merchant", "CUST-A")[0] == 403


def test_the_order_map(dash: Dash) -> None:
    status, body = dash.get("/dashboard/map-orders?active=true", "operator")
    assert status == 200 and body["total"] == 5 and body["truncated"] is False
    assert [o["orderId"] for o in body["orders"]] == [dash.oid(x) for x in "HGFED"]  # newest id first
    f = next(o for o in body["orders"] if o["orderId"] == dash.oid("F"))
    dest = dash.views["F"]["destination"]
    assert f == {"orderId": dash.oid("F"), "status": "DELIVERING", "lat": dest["lat"], "lng": dest["lng"],
                 "warehouseId": WH, "driverId": "DRV-A"}
    status, every = dash.get("/dashboard/map-orders?active=false", "customer_service")
    assert status == 200 and every["total"] == len(STORIES) == len(every["orders"])


def test_the_fleet_with_loads_and_cold_chain_states(dash: Dash) -> None:
    status, body = dash.get("/dashboard/fleet", "operator")
    assert status == 200, body
    drivers = {x["driverId"]: x for x in body["drivers"]}
    assert set(drivers) == {"DRV-A", "DRV-B", "DRV-C"}
    a = drivers["DRV-A"]
    assert (a["vehicleId"], a["atMs"], a["lat"], a["speedKmh"]) == ("VAN-A", T0, 39.9, 20.0)
    assert (a["loadKg"], a["ordersOnBoard"], a["coldChain"]) == (12.5, 1, "critical")
    assert (drivers["DRV-B"]["loadKg"], drivers["DRV-B"]["ordersOnBoard"]) == (None, None)
    assert drivers["DRV-B"]["coldChain"] == "ok" and drivers["DRV-C"]["coldChain"] == "warning"
    assert dash.get("/dashboard/fleet", "driver", "DRV-A")[0] == 403


def test_warehouses_for_every_role(dash: Dash) -> None:
    for role, tenant in (("operator", None), ("driver", "DRV-A"), ("warehouse_staff", WH), ("customer", "C")):
        status, body = dash.get("/dashboard/warehouses", role, tenant)
        assert status == 200 and WH in {w["id"] for w in body["warehouses"]}


def test_kpis_of_today_and_the_intraday_series(dash: Dash) -> None:
    updates = seed_kpis(dash)
    city = [u for u in updates if u["dimension"] == "city"]
    status, body = dash.get("/dashboard/kpis?dimension=city", "operator")
    assert status == 200, body
    assert (body["dimension"], body["id"], body["day"]) == ("city", "all", city[-1]["day"])
    assert body["current"]["orders"] == city[-1]["orders"] == len(STORIES)
    assert body["current"]["fulfilmentRate"] == city[-1]["fulfilment_rate"]
    steps = sorted({u["as_of"] - u["as_of"] % 300_000 for u in city})
    assert [p["atMs"] for p in body["series"]] == steps and len(steps) > 1  # oldest first, one per 5 minutes
    assert body["series"][-1]["orders"] == len(STORIES)
    assert body["series"][-1]["onTimeRate"] == city[-1]["on_time_rate"]
    status, mine = dash.get("/dashboard/kpis?dimension=merchant", "merchant", "CUST-A")
    assert status == 200 and mine["id"] == "CUST-A" and mine["current"]["orders"] == 2
    assert dash.get("/dashboard/kpis?dimension=merchant&id=CUST-B", "merchant", "CUST-A")[0] == 403


def test_kpis_answer_503_when_influxdb_does_not(dash: Dash) -> None:
    from service.auth import Principal
    from service.dashboard_kpis import kpis
    from service.reads import Unavailable

    down = dataclasses.replace(dash.settings, influx_url="http://127.0.0.1:9")
    with pytest.raises(Unavailable, match="KPI series of city all"):
        kpis(down, Principal("u", "operator", None), "city", None, 7, int(time.time() * 1000))


def test_stock_and_merchant_warnings(dash: Dash) -> None:
    sku_low, sku_ok = (ln["sku"] for ln in dash.views["A"]["lines"][:2])
    status, body = dash.get(f"/dashboard/stock?warehouse={WH}", "warehouse_staff", WH)
    assert status == 200 and body["warehouseId"] == WH
    assert {lv["sku"]: lv["low"] for lv in body["levels"]} == {sku_low: True, sku_ok: False}
    assert [(s["sku"], s["quantity"]) for s in body["suggestions"]] == [(sku_low, 14.0)]
    assert dash.get(f"/dashboard/stock?warehouse={WH}", "warehouse_staff", "WH-OTHER")[0] == 403
    status, warn = dash.get("/dashboard/merchant-stock", "merchant", "CUST-A")
    assert status == 200 and warn["customerId"] == "CUST-A"
    assert [(w["sku"], w["warehouseId"], w["onHand"], w["restockSuggested"]) for w in warn["warnings"]] == [
        (sku_low, WH, 2.0, 14.0)]
    short = {(x["orderId"], x["sku"], x["short"]) for x in warn["shortLines"]}
    expected = {(dash.oid(x), ln["sku"], ln["short"]) for x in "AB" for ln in dash.views[x]["lines"] if ln["short"]}
    assert short == expected and expected
    assert dash.get("/dashboard/merchant-stock?customer=CUST-A", "merchant", "CUST-B")[0] == 403


def test_the_pipeline_health(dash: Dash) -> None:
    status, first = dash.get("/dashboard/pipeline", "operator")
    assert status == 200, first
    topics = {t["topic"]: t for t in first["topics"]}
    gps = dash.sl.topics[GPS.name]
    assert topics[gps]["endOffset"] == dash.pings and dash.sl.topics[ORDER_EVENTS.name] in topics
    from service.observability import worker_groups

    groups = worker_groups(dash.settings)
    assert set(first["consumerLag"]) == set(groups)
    produced = {dash.sl.topics[ORDER_EVENTS.name]: sum(len(e) for e in dash.events.values()), gps: dash.pings}
    orders_group = dash.sl.env["KUAILV_CONSUMER_GROUP"]  # the order agent's (and the telemetry agent's) group
    assert first["consumerLag"][orders_group] == sum(produced.get(t, 0) for t in groups[orders_group])  # unread
    dead = first["deadLetters"]
    assert dead["total"] == 2 and [x["reason"] for x in dead["recent"]] == ["junk 1", "junk 0"]
    assert dead["recent"][0] == {"reason": "junk 1", "reasonCode": "NOT_AVRO_FRAMED", "topic": gps, "partition": 1,
                                 "offset": 41, "atMs": T0 + 1, "consumer": "test"}
    assert first["openAlerts"] == len(dash.alerts)
    dash.ping("DRV-A", "VAN-A", T0 + 60_000, 30)
    time.sleep(3.2)  # past the 3 s cache
    second = dash.get("/dashboard/pipeline", "customer_service")[1]
    now = {t["topic"]: t for t in second["topics"]}[gps]
    assert now["endOffset"] == dash.pings and now["eventsPerSec"] > 0
    assert dash.get("/dashboard/pipeline", "warehouse_staff", WH)[0] == 403


def test_acknowledging_an_alert(dash: Dash) -> None:
    late = f"late-delivery/order/{dash.oid('F')}"
    path = f"/alerts/{urllib.parse.quote(late, safe='')}/ack"
    ops = dash.http.token("operator")
    status, body = dash.http.post(path, {"note": "calling the driver"}, ops)
    assert status == 200 and (body["alertId"], body["acknowledgedBy"]) == (late, "test-operator")
    listed = {a["alert_id"]: a for a in dash.http.get("/alerts", ops)[1]["alerts"]}
    assert listed[late]["acknowledged"] == {"by": "test-operator", "at": body["acknowledgedAt"]}
    assert all(a["acknowledged"] is None for k, a in listed.items() if k != late)
    status, mine = dash.get(f"/orders/{dash.oid('F')}/alerts", "merchant", "CUST-B")
    assert status == 200 and mine["alerts"][0]["acknowledged"]["by"] == "test-operator"
    assert dash.sl.redis.hget(f"{dash.sl.prefix}:alert-ack:{late}", "note") == b"calling the driver"
    status, denied = dash.http.post(path, {"note": None}, dash.http.token("merchant", "CUST-B"))
    assert status == 403 and "operators and customer service" in denied["detail"]
    status, missing = dash.http.post("/alerts/no-such-alert/ack", {}, ops)
    assert status == 404 and "no-such-alert" in missing["detail"]
    from audit.store import AuditStore

    store = AuditStore.from_url(dash.audit_url)
    try:
        acks = [e for e in store.entries("api") if e.kind == "alert.ack"]
        assert store.verify("api").ok
    finally:
        store.close()
    seen = [(e.actor.role, e.subject, json.loads(e.payload)["details"]["outcome"]) for e in acks if e.actor]
    assert seen == [("operator", late, "accepted"), ("merchant", late, "denied"),
                    ("operator", "no-such-alert", "not_found")]
    assert all(b"calling the driver" not in e.payload for e in acks)  # the note stays out of the chain
    assert dash.http.checked >= 20  # every answer of this module matched /openapi.json


def test_an_empty_pipeline_answers_zeros_not_errors(dash: Dash) -> None:
    from service.auth import Principal
    from service.dashboard_reads import DashboardReads

    reads = DashboardReads(dataclasses.replace(dash.settings, redis_prefix=f"empty{dash.sl.tag}"))
    ops = Principal("u", "operator", None)
    assert reads.fleet(ops)["drivers"] == []
    empty = reads.funnel(ops)
    assert set(empty["counts"].values()) == {0} and empty["sampled"] == 0
    assert all(s["orders"] == 0 and s["medianMs"] is None for s in empty["stages"])
    assert reads.map_orders(ops) == {"orders": [], "total": 0, "truncated": False}
    assert reads.merchant_stock(ops, "CUST-A") == {"customerId": "CUST-A", "warnings": [], "shortLines": []}
    assert reads.stock(ops, WH) == {"warehouseId": WH, "levels": [], "suggestions": []}
