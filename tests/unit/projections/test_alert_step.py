"""AlertProjection through ``fold_batch``: order views and sensor readings become alert records."""

from __future__ import annotations

from typing import Any

from config.alert_rules import load_rules_file
from projections.alert_step import AlertProjection, fire_timers, next_due
from projections.keyed_batch import fold_batch
from projections.order_state import fold
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from simulator.events import MINUTE, T0, order_story

EVENTS, SENSORS = "kuailv.order-events.v1", "kuailv.sensors.v1"
CODEC = AvroCodec(epoch_ms=True)
RULES = load_rules_file()
P = AlertProjection(CODEC, RULES, {EVENTS: "OrderEvent", SENSORS: "SensorReading"})


def views(order_id: str, ending: str = "signed") -> list[tuple[str, dict[str, Any]]]:
    """The order's events (named for what the rules see: the view after each)."""
    return order_story(order_id, ending=ending)


def view_after(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    state = None
    for event_type, event in events:
        state = fold(state, event_type, event).state
    assert state is not None
    return state["view"]


def as_records(values: list[Any], start: int = 0) -> list[SourceRecord]:
    out = []
    for n, v in enumerate(values):
        if isinstance(v, tuple):
            rec = SourceRecord(EVENTS, 0, start + n, v[1]["order_id"].encode(), CODEC.encode(v[0], v[1]), None)
        else:
            rec = SourceRecord(SENSORS, 0, start + n, v["device_id"].encode(), CODEC.encode("SensorReading", v), None)
        out.append(rec)
    return out


def run(values: list[Any], batch: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]], list]:
    states: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    dead: list = []
    recs = as_records(values)
    for i in range(0, len(recs), batch):
        result = fold_batch(P, recs[i:i + batch], lambda keys: states)
        for key, f in result.folded.items():
            if f.state is not None:
                states[key] = f.state
            alerts += [o for o in f.outputs if type(o) is not tuple]  # ("reading", r): forwarded to the fleet
        dead += result.dead_letters
    return states, alerts, dead


def test_shortage_opens_at_stock_check_and_resolves_when_signed() -> None:
    _, alerts, _ = run(views("KL-A"))
    got = [(a["rule_id"], a["status"]) for a in alerts]
    assert got == [("stock-shortage", "OPEN"), ("stock-shortage", "RESOLVED")]
    assert alerts[0]["alert_id"] == "stock-shortage/order/KL-A" and alerts[0]["order_id"] == "KL-A"
    assert alerts[1]["resolved_at"] > alerts[0]["opened_at"]
    CODEC.encode("Alert", alerts[0])


def test_batching_and_reordering_do_not_change_the_alerts() -> None:
    vs = views("KL-B", "redispatched") + views("KL-C", "out_of_stock")
    one = run(vs, batch=1)[1]
    many = run(vs, batch=7)[1]
    shuffled = list(vs)
    shuffled[2], shuffled[4] = shuffled[4], shuffled[2]  # out of version order: the fold buffers, then drains
    assert [(a["alert_id"], a["status"]) for a in run(shuffled, batch=3)[1]] == [
        (a["alert_id"], a["status"]) for a in one]
    assert [(a["alert_id"], a["status"]) for a in one] == [(a["alert_id"], a["status"]) for a in many]
    assert {a["rule_id"] for a in one} >= {"exception-reported", "out-of-stock"}


def test_redelivered_views_are_duplicates() -> None:
    vs = views("KL-D")
    recs = as_records(vs)
    states: dict[str, Any] = {}
    first = fold_batch(P, recs, lambda keys: states)
    states = {k: f.state for k, f in first.folded.items()}
    again = fold_batch(P, recs, lambda keys: states)
    assert all(f.outputs == [] and not f.changed for f in again.folded.values())


def test_late_delivery_timer_fires_at_its_due_time_once() -> None:
    vs = views("KL-E")
    upto = next(i for i, (t, _) in enumerate(vs) if t == "OrderDispatched") + 1
    dispatched = view_after(vs[:upto])
    states, _, _ = run(vs[:upto])
    st = states["order:KL-E"]
    due = st["timers"]["late-delivery"]
    assert due == dispatched["delivery_window_end"] + 30 * MINUTE and next_due(st) <= due
    st = {**st, "timers": dict(st["timers"]), "fired": dict(st["fired"]), "alerts": dict(st["alerts"])}
    early = fire_timers(st, due - 1, RULES)
    assert "late-delivery" in st["timers"] and all(a["rule_id"] != "late-delivery" for a in early)
    fired = fire_timers(st, due, RULES)
    late = [a for a in fired if a["rule_id"] == "late-delivery"]
    assert len(late) == 1 and late[0]["opened_at"] == due and late[0]["severity"] == "CRITICAL"
    assert "late-delivery" not in st["timers"] and fire_timers(st, due + MINUTE, RULES) == []


def reading(n: int, temp: float, device: str = "SEN-VAN-1-A", **over: Any) -> dict[str, Any]:
    return {"event_id": f"r{n}", "device_id": device, "vehicle_id": "VAN-1", "warehouse_id": None,
            "compartment": "CHILLED", "event_time": T0 + n * MINUTE, "producer": "sensor-gateway",
            "temperature_c": temp, "humidity_pct": 80.0, **over}


def test_a_cold_room_failure_opens_a_breach_that_resolves_when_the_sensor_recovers() -> None:
    temps = [3.0, 3.5] + [7.0 + n * 0.3 for n in range(14)] + [3.8, 3.2]
    room = {"device": "SEN-WH-1-A", "vehicle_id": None, "warehouse_id": "WH-1"}
    _, alerts, dead = run([reading(n, t, **room) for n, t in enumerate(temps)], batch=4)
    assert [(a["rule_id"], a["status"]) for a in alerts] == [("cold-chain-breach", "OPEN"),
                                                              ("cold-chain-breach", "RESOLVED")]
    assert alerts[0]["opened_at"] == T0 + 2 * MINUTE and alerts[0]["warehouse_id"] == "WH-1"
    assert dead == []


def test_a_vans_compartment_is_left_to_the_fleet_view() -> None:
    """A van's readings raise nothing here: the fleet view decides them, knowing the orders on board."""
    temps = [3.0, 3.5] + [7.0 + n * 0.3 for n in range(14)] + [3.8, 3.2]
    _, alerts, dead = run([reading(n, t) for n, t in enumerate(temps)], batch=4)
    assert alerts == [] and dead == []


def test_vehicle_readings_taken_are_forwarded_to_the_fleet_view_once() -> None:
    recs = as_records([reading(0, 3.0), reading(1, 9.0), reading(1, 9.0), reading(2, 3.0)])
    result = fold_batch(P, recs, lambda keys: {})
    forwarded = [o[1]["event_id"] for f in result.folded.values() for o in f.outputs if type(o) is tuple]
    assert forwarded == ["r0", "r1", "r2"]  # the duplicate is not forwarded
    room = as_records([reading(0, 3.0, device="SEN-WH-1", vehicle_id=None, warehouse_id="WH-1")])
    assert not any(type(o) is tuple for f in fold_batch(P, room, lambda keys: {}).folded.values() for o in f.outputs)


def test_a_reading_older_than_the_last_is_a_late_event() -> None:
    states, _, dead = run([reading(5, 3.0), reading(6, 3.0), reading(2, 9.0)], batch=1)
    assert [d.reason_code for d in dead] == ["LATE_EVENT"]
    assert states["device:SEN-VAN-1-A"]["cold_chain"]["last_at"] == T0 + 6 * MINUTE
