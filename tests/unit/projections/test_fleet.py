"""The fleet view and re-dispatch suggestions (projections.fleet), with fixed instants."""

from __future__ import annotations

from typing import Any

import pytest

from projections import fleet
from projections.fleet import FLEET_KEY, FleetContext, FleetProjection, redispatch_request
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import FLEET
from simulator.events import T0, order_story

MIN = 60_000


def step(state: dict[str, Any] | None, inputs: list[tuple[str, dict[str, Any]]], ctx: FleetContext
         ) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """``fleet.step`` keeping the suggestions only (the exposure alerts have their own tests)."""
    st, out, dup = fleet.step(state, inputs, ctx)
    return st, [v for kind, v in out if kind == "suggestion"], dup
CTX = FleetContext(default_capacity_kg=500.0, capacity_kg={"VAN-SMALL": 50.0})
INCIDENT = {"lat": 39.90, "lng": 116.40}


def status(driver: str, at: int, lat: float, lng: float, load: float = 0.0, vehicle: str | None = None
           ) -> tuple[str, dict[str, Any]]:
    return "DriverStatus", {"driver_id": driver, "vehicle_id": vehicle or f"VAN-{driver}", "lat": lat, "lng": lng,
                            "at": at, "load_kg": load, "orders_on_board": []}


def request(order: str = "KL1", driver: str = "D0", at: int = T0, weight: float = 40.0) -> tuple[str, dict[str, Any]]:
    return "RedispatchRequest", {
        "request_id": f"{order}#1", "order_id": order, "from_driver_id": driver, "from_vehicle_id": f"VAN-{driver}",
        "dispatch_count": 1, "reason_code": "TRAFFIC_ACCIDENT", "incident": INCIDENT,
        "destination": {"lat": 39.95, "lng": 116.45}, "weight_kg": weight, "customer_id": "C1",
        "warehouse_id": "WH-1", "requested_at": at}


def test_nearest_available_driver_with_room_is_proposed_with_distance_eta_and_reasons() -> None:
    inputs = [status("D0", T0 - MIN, 39.90, 116.40),             # the reporting driver, at the incident
              status("D1", T0 - MIN, 39.901, 116.401, load=480),  # nearest, but full (500 kg)
              status("D2", T0 - MIN, 39.91, 116.41),              # next nearest, room: chosen
              status("D3", T0 - MIN, 39.99, 116.50),              # farther
              status("D4", T0 - 20 * MIN, 39.9001, 116.4001),     # nearest of all, but its fix is stale
              request(at=T0), status("D3", T0 + 2 * MIN, 39.99, 116.50)]  # clock passes T0 + lateness
    _, out, dup = step(None, inputs, CTX)
    assert dup == 0 and len(out) == 1
    s = out[0]
    assert (s["suggestion_id"], s["to_driver_id"], s["to_vehicle_id"]) == ("KL1#1", "D2", "VAN-D2")
    assert 1_000 < s["distance_m"] < 2_500 and s["eta"] > T0 and s["decided_at"] == T0
    assert s["excluded"] == {"D0": "reporting driver", "D1": "full: 480/500 kg, order needs 40 kg",
                             "D4": "position 20 min old"}
    assert s["considered"] == 5 and s["estimator"] == "distance-speed/v1"


def test_waits_for_the_fleet_clock_and_judges_each_driver_at_the_incident_time() -> None:
    st, out, _ = step(None, [status("D1", T0 - MIN, 39.91, 116.41), request(at=T0)], CTX)
    assert out == [] and [p["request_id"] for p in st["pending"]] == ["KL1#1"]
    # D2 was far away at the incident and arrived next to it later; D1 stays where it was
    st, out, _ = step(st, [status("D2", T0 - 30_000, 40.20, 116.80), status("D2", T0 + 50_000, 39.9001, 116.4001)],
                      CTX)
    assert out == []  # clock T0 + 50 s: not yet past T0 + 60 s
    st, out, _ = step(st, [status("D1", T0 + 61_000, 39.91, 116.41)], CTX)
    assert [s["to_driver_id"] for s in out] == ["D1"], "D2's position after the incident must not count"
    assert st["pending"] == []


def test_duplicates_and_a_busy_reporting_driver() -> None:
    st, out, dup = step(None, [status("D1", T0, 39.91, 116.41), request("KL1", "D1", T0),
                               request("KL1", "D1", T0), status("D2", T0, 39.92, 116.42),
                               request("KL2", "D2", T0 + 5 * MIN), status("D2", T0 + 7 * MIN, 39.92, 116.42)], CTX)
    assert dup == 1
    by_order = {s["order_id"]: s for s in out}
    assert by_order["KL1"]["to_driver_id"] == "D2"
    # D1 reported an incident 5 min earlier: its van is stopped, not a candidate for KL2
    assert by_order["KL2"]["to_driver_id"] is None and by_order["KL2"]["excluded"]["D1"] == "unavailable"
    _, again, dup = step(st, [request("KL1", "D1", T0), status("D2", T0 + 9 * MIN, 39.92, 116.42)], CTX)
    assert again == [] and dup == 1  # decided already


def test_vehicle_capacity_from_the_fleet_configuration() -> None:
    _, out, _ = step(None, [status("D1", T0, 39.901, 116.401, vehicle="VAN-SMALL"), status("D2", T0, 39.95, 116.5),
                            request(weight=60.0), status("D2", T0 + 2 * MIN, 39.95, 116.5)], CTX)
    assert out[0]["to_driver_id"] == "D2" and out[0]["excluded"]["D1"].startswith("full: 0/50 kg")


def test_request_from_the_order_view_only_when_the_van_stops() -> None:
    states, _ = fold_all(order_story("KLR1", T0, ending="redispatched"))
    view = states["KLR1"]["view"]
    views = []  # every version of the view
    state = None
    from projections.order_state import fold

    for t, e in order_story("KLR1", T0, ending="redispatched"):
        result = fold(state, t, e, trace=True)
        state = result.state
        views += result.views
    requests = [r for before, after in zip([None, *views], views, strict=False)
                if (r := redispatch_request(before, after)) is not None]
    assert len(requests) == 1
    r = requests[0]
    assert r["request_id"] == "KLR1#1" and r["reason_code"] == "TRAFFIC_ACCIDENT" and r["weight_kg"] > 0
    assert r["destination"] == {"lat": view["destination"]["lat"], "lng": view["destination"]["lng"]}
    assert redispatch_request(views[-1], views[-1]) is None


def test_projection_decodes_checks_keys_and_skips_redelivered_offsets() -> None:
    codec = AvroCodec(epoch_ms=True)
    projection = FleetProjection(codec, CTX)

    def rec(offset: int, record_type: str, value: dict[str, Any], key: str) -> SourceRecord:
        return SourceRecord(FLEET.name, 0, offset, key.encode(), codec.encode(record_type, value), value.get("at"))

    t, v = status("D1", T0, 39.91, 116.41)
    keyed = projection.decode(rec(0, t, v, "D1"))
    assert keyed.key == FLEET_KEY
    wrong = projection.decode(rec(1, t, v, "D9"))
    assert wrong.reason_code == "INVALID_EVENT" and "message key" in wrong.reason
    t2, v2 = request(driver="D0")
    assert projection.decode(rec(2, t2, v2, "KL1")).key == FLEET_KEY
    bad = dict(v, lat=123.0)
    assert projection.decode(rec(3, t, bad, "D1")).reason_code == "INVALID_EVENT"
    items = [(rec(0, t, v, "D1"), (t, v))]
    folded = projection.fold(FLEET_KEY, None, items)
    again = projection.fold(FLEET_KEY, folded.state, items)
    assert again.duplicates == 1 and not again.changed


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_batching_does_not_change_the_decisions(cut: int) -> None:
    inputs = [status("D1", T0 - MIN, 39.91, 116.41), status("D2", T0 - MIN, 39.92, 116.42), request(at=T0),
              status("D2", T0 + 30_000, 39.90, 116.40), status("D1", T0 + 90_000, 39.91, 116.41),
              request("KL2", "D1", T0 + 2 * MIN), status("D2", T0 + 4 * MIN, 39.90, 116.40)]
    _, whole, _ = step(None, inputs, CTX)
    st, parts = None, []
    for i in range(0, len(inputs), cut):
        st, out, _ = step(st, inputs[i:i + cut], CTX)
        parts += out
    assert parts == whole and len(whole) == 2


def sensor(n: int, temp: float, at: int, vehicle: str = "VAN-D1") -> tuple[str, dict[str, Any]]:
    return "SensorReading", {"event_id": f"s{n}", "device_id": f"SEN-{vehicle}-A", "vehicle_id": vehicle,
                             "warehouse_id": None, "compartment": "CHILLED", "event_time": at,
                             "producer": "sensor-gateway", "temperature_c": temp, "humidity_pct": 80.0}


def test_cold_chain_exposure_per_trip_with_the_orders_on_the_van() -> None:
    """A van loaded with two orders at T0; its chilled compartment warms for 20 minutes during the trip; the
    exposure alert opens when 15 minutes have accumulated and resolves when the van is empty (trip end)."""
    from config.alert_rules import load_rules_file

    ctx = FleetContext(rules=load_rules_file())
    inputs = [status("D1", T0, 39.9, 116.4, load=50, vehicle="VAN-D1")]
    inputs[0][1]["orders_on_board"] = ["KL1", "KL2"]
    temps = [3.0] * 5 + [8.0] * 21 + [3.0] * 5  # one reading a minute from T0 + 1 min
    for n, t in enumerate(temps):
        inputs.append(sensor(n, t, T0 + (n + 1) * MIN))
        inputs.append(status("D1", T0 + (n + 1) * MIN, 39.9, 116.4, load=50, vehicle="VAN-D1"))
        inputs[-1][1]["orders_on_board"] = ["KL1", "KL2"]
    end = T0 + (len(temps) + 1) * MIN
    inputs += [status("D1", end, 39.9, 116.4, vehicle="VAN-D1"), sensor(99, 3.0, end + 30_000),
               status("D1", end + 3 * MIN, 39.9, 116.4, vehicle="VAN-D1")]
    _, out, _ = fleet.step(None, inputs, ctx)
    breach = [a for kind, a in out if kind == "alert" and a["rule_id"] == "cold-chain-breach"]
    assert [a["status"] for a in breach] == ["OPEN", "RESOLVED"]
    assert breach[0]["evidence"]["orders"] == "KL1,KL2" and breach[0]["opened_at"] == T0 + 6 * MIN
    alerts = [a for kind, a in out if kind == "alert" and a["rule_id"] == "cold-chain-exposure"]
    assert [a["status"] for a in alerts] == ["OPEN", "RESOLVED"]
    opened = alerts[0]
    assert opened["opened_at"] == T0 + 6 * MIN + 15 * MIN  # first warm reading + 15 min
    assert opened["evidence"]["orders"] == "KL1,KL2" and opened["vehicle_id"] == "VAN-D1"
    assert opened["alert_id"] == f"cold-chain-exposure/vehicle/VAN-D1/CHILLED/trip-{T0 + MIN}"
    # the same inputs cut into batches anywhere give the same alerts
    st, cut = None, []
    for i in range(0, len(inputs), 7):
        st, part, _ = fleet.step(st, inputs[i:i + 7], ctx)
        cut += [a for kind, a in part if kind == "alert"]
    assert cut == [a for kind, a in out if kind == "alert"]


def test_no_exposure_without_orders_on_board_but_a_breach_is_a_breach() -> None:
    from config.alert_rules import load_rules_file

    ctx = FleetContext(rules=load_rules_file())
    inputs = [sensor(n, 9.0, T0 + n * MIN) for n in range(30)] + [status("D1", T0 + 40 * MIN, 39.9, 116.4,
                                                                         vehicle="VAN-D1")]
    _, out, _ = fleet.step(None, inputs, ctx)
    alerts = [a for kind, a in out if kind == "alert"]
    assert [a["rule_id"] for a in alerts] == ["cold-chain-breach"]  # a breach, with no order to name
    assert alerts[0]["evidence"]["orders"] == ""


def test_a_drivers_load_is_their_newest_status_with_the_orders_on_the_van_then() -> None:
    def on(driver: str, at: int, load: float, orders: list[str], route: list[str] | None = None
           ) -> tuple[str, dict[str, Any]]:
        kind, v = status(driver, at, 39.9, 116.4, load=load)
        return kind, {**v, "orders_on_board": orders, **({"stop_order": route} if route is not None else {})}

    st, _, _ = step(None, [on("D1", T0, 40.0, ["KL1"]), on("D1", T0 + MIN, 70.5, ["KL1", "KL2"], ["KL2", "KL1"]),
                           on("D1", T0 + 30_000, 0.0, []), on("D2", T0, 5.0, ["KL9"])], CTX)  # a late status
    assert fleet.driver_load(st, "D1") == {"driver_id": "D1", "vehicle_id": "VAN-D1", "at": T0 + MIN,
                                           "load_kg": 70.5, "order_ids": ["KL1", "KL2"], "stop_order": ["KL2", "KL1"]}
    assert fleet.driver_load(st, "D2")["order_ids"] == ["KL9"]
    assert fleet.driver_load(st, "D-UNKNOWN") is None and fleet.driver_load(None, "D1") is None
