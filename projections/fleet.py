"""The fleet view and re-dispatch suggestions (seed scenario 2). Pure.

Input: ``kuailv.fleet.v1``, one partition, so one consumer sees the whole fleet in one order:

* ``DriverStatus`` from the geofence projection (``projections.geofence_step``): a driver's last
  fix and the weight on board, every ``status_interval_ms`` of the driver's event time and when
  its load changes;
* ``RedispatchRequest`` from the order projection (``redispatch_request``): an order on a van
  whose driver reported a traffic accident or a breakdown (``ExceptionReported``);
* ``SensorReading`` of the vans' compartments, forwarded by the alert projection (the readings it
  took: no duplicates, none late).

**A van's cold chain.** Sensors are keyed by device and orders on vans by driver, so only the fleet
view sees both. A van's loads over time come from its ``DriverStatus`` records (the last 15 minutes
kept); each reading is held until the fleet clock (statuses: the loads up to then are known) is
``lateness_ms`` past it, then goes, in
event-time order, through ``projections.cold_chain`` with the orders on the van at that reading:
a breach (``cold-chain-breach``) names the orders on board when it opens (warehouse rooms stay with
the alert projection, per device); for exposure, a trip is the time the
van has orders on board, and the alert (``cold-chain-exposure``, subject
``vehicle/<van>/<compartment>/trip-<start>``, evidence with the trip's orders) opens when the
accumulated out-of-range time reaches the threshold and resolves when the trip ends.

Per request, once the fleet's event-time clock (the newest status time) has passed the incident
time by ``lateness_ms`` (so the statuses of that moment have arrived, whatever the pace of the
geofence path), ``projections.redispatch.suggest`` picks the nearest available driver with room
for the order and says why it passed over the others. Each candidate is judged by its newest
status *at or before the incident* (the two newest are kept), so the choice depends on the
statuses of that moment, not on what arrived since. A driver who reported an incident is
unavailable for ``busy_ms`` (the van is stopped). The decision is a ``RedispatchSuggestion``
(keyed by order id, on ``kuailv.redispatch-suggestions.v1``): a proposal for a dispatcher, never an
order event; when the re-dispatch happens (``OrderDispatched``, dispatch count + 1), the new van's
ETAs replace the old ones through the geofence projection like any dispatch.

Everything is in one state under the key ``fleet`` (drivers, pending requests, recent decisions):
O(drivers) per decision and per saved state; a city of 20,000 vans shards the topic by region
(docs/alerts.md, "Re-dispatch").
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections import cold_chain
from projections.alert_rules import RuleSet
from projections.alerts import apply_changes
from projections.eta import DistanceSpeedEta, EtaEstimator
from projections.keyed_batch import Folded, Keyed, decode_checked, skip_applied
from projections.order_events import InvalidEvent
from projections.redispatch import MAX_FIX_AGE_MS, Candidate, suggest
from projections.telemetry import check_ids, validate_sensor
from projections.van_orders import weight_kg
from schemas.dead_letters import DeadLetter, SourceRecord

FLEET_KEY = "fleet"
REDISPATCH_REASONS = frozenset({"TRAFFIC_ACCIDENT", "VEHICLE_BREAKDOWN"})  # the van cannot go on
RECENT_DECISIONS = 512
STATUS_INTERVAL_MS = 30_000  # GeoContext.status_ms as the engines run it
ESTIMATOR_NAME = "distance-speed/v1"

View = Mapping[str, Any]


@dataclass(frozen=True)
class FleetContext:
    default_capacity_kg: float = 1500.0
    capacity_kg: Mapping[str, float] = field(default_factory=dict)  # vehicle id -> capacity
    lateness_ms: int = 60_000
    busy_ms: int = 60 * 60_000  # a driver who reported an incident is not a candidate for this long
    max_fix_age_ms: int = MAX_FIX_AGE_MS
    estimator: EtaEstimator = field(default_factory=DistanceSpeedEta)
    rules: RuleSet | None = None  # cold-chain-exposure per trip (None: no exposure alerts)

    def capacity(self, vehicle_id: str) -> float:
        return self.capacity_kg.get(vehicle_id, self.default_capacity_kg)


def redispatch_request(before: View | None, after: View) -> dict[str, Any] | None:
    """The ``RedispatchRequest`` the change ``before`` -> ``after`` of one order's view implies: the order
    is on a van and its driver just reported an incident that stops the van; None otherwise."""
    exc = after.get("exception")
    if exc is None or after["status"] != "EXCEPTION_HANDLING" or exc["reason_code"] not in REDISPATCH_REASONS:
        return None
    if before is not None and before.get("exception") == exc:
        return None
    driver, loc, dest = after.get("driver"), after.get("last_location"), after["destination"]
    if driver is None or loc is None:
        return None
    return {"request_id": f"{after['order_id']}#{after['dispatch_count']}", "order_id": after["order_id"],
            "from_driver_id": driver["driver_id"], "from_vehicle_id": driver["vehicle_id"],
            "dispatch_count": after["dispatch_count"], "reason_code": exc["reason_code"],
            "incident": {"lat": loc["lat"], "lng": loc["lng"]},
            "destination": {"lat": dest["lat"], "lng": dest["lng"]}, "weight_kg": weight_kg(after),
            "customer_id": after["customer_id"], "warehouse_id": after["warehouse_id"], "requested_at": exc["at"]}


_TYPES = ("DriverStatus", "RedispatchRequest", "SensorReading")
_KEYS = {"DriverStatus": "driver_id", "RedispatchRequest": "order_id", "SensorReading": "vehicle_id"}  # message keys
LOAD_HISTORY_MS = 15 * 60_000  # how far back a van's loads are kept to date its readings' orders on board


def _validate(v: Mapping[str, Any]) -> None:
    if "request_id" in v:
        _validate_request(v)
    elif "device_id" in v:
        validate_sensor(v)
    else:
        _validate_status(v)


def _validate_status(v: Mapping[str, Any]) -> None:
    check_ids(v, "driver_id", "vehicle_id")
    if not (-90.0 <= v["lat"] <= 90.0 and -180.0 <= v["lng"] <= 180.0):
        raise InvalidEvent(f"driver {v['driver_id']}: ({v['lat']}, {v['lng']}) is not a coordinate")
    if not v["load_kg"] >= 0:
        raise InvalidEvent(f"driver {v['driver_id']}: load_kg {v['load_kg']} < 0")


def _validate_request(v: Mapping[str, Any]) -> None:
    check_ids(v, "order_id", "from_driver_id")
    if not v["weight_kg"] >= 0:
        raise InvalidEvent(f"order {v['order_id']}: weight_kg {v['weight_kg']} < 0")


def decide(drivers: Mapping[str, Any], request: Mapping[str, Any], ctx: FleetContext) -> dict[str, Any]:
    """The ``RedispatchSuggestion`` for ``request`` given the fleet's ``drivers`` (state entries)."""
    at = request["requested_at"]
    candidates = []
    for driver_id in sorted(drivers):
        d = drivers[driver_id]
        fix = d["fix"] if d["fix"][2] <= at or d.get("prev") is None else d["prev"]
        busy = any(start <= at < end for start, end in d.get("busy") or ())
        candidates.append(Candidate(driver_id, d["vehicle"], fix[0], fix[1], fix[2], ctx.capacity(d["vehicle"]),
                                    fix[3], not busy))
    inc, dest = request["incident"], request["destination"]
    decision = suggest(request["order_id"], request["from_driver_id"], inc["lat"], inc["lng"], dest["lat"],
                       dest["lng"], request["weight_kg"], at, candidates, ctx.estimator, ctx.max_fix_age_ms)
    s = decision.suggestion
    return {"suggestion_id": request["request_id"], "order_id": request["order_id"],
            "dispatch_count": request["dispatch_count"], "from_driver_id": request["from_driver_id"],
            "reason_code": request["reason_code"], "to_driver_id": None if s is None else s.to_driver_id,
            "to_vehicle_id": None if s is None else s.to_vehicle_id,
            "distance_m": None if s is None else round(s.distance_m, 1), "eta": None if s is None else s.eta,
            "decided_at": at, "reason": decision.reason, "considered": decision.considered,
            "excluded": dict(sorted(decision.excluded.items())), "estimator": ESTIMATOR_NAME}


def step(state: dict[str, Any] | None, inputs: Sequence[tuple[str, dict[str, Any]]], ctx: FleetContext
         ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], int]:
    """Fold ``inputs`` (record type, value) in arrival order; returns (state, outputs, duplicates): outputs
    ``("suggestion", RedispatchSuggestion)`` and ``("alert", Alert)`` (cold-chain exposure)."""
    st = _copy(state)
    drivers = st["drivers"]
    out: list[tuple[str, dict[str, Any]]] = []
    duplicates = 0
    for record_type, v in inputs:
        if record_type == "DriverStatus":
            _status(drivers, v)
            _load(st["loads"], v)
            st["clock"] = v["at"] if st["clock"] is None else max(st["clock"], v["at"])
        elif record_type == "SensorReading":
            insort(st["readings"], v, key=_reading_order)  # held in release order: a release looks at a prefix
            # a second clock, for vans that never sent a status (no GPS): they keep their cold chain
            st["sensor_clock"] = max(st.get("sensor_clock") or v["event_time"], v["event_time"])
        elif v["request_id"] in st["done"] or any(p["request_id"] == v["request_id"] for p in st["pending"]):
            duplicates += 1
            continue
        else:
            st["pending"].append(v)
            d = drivers.get(v["from_driver_id"])
            if d is not None:  # the van is stopped from the incident on: [start, end) intervals, the last few
                busy = [*(d.get("busy") or ()), [v["requested_at"], v["requested_at"] + ctx.busy_ms]]
                drivers[v["from_driver_id"]] = {**d, "busy": busy[-4:]}
        if st["clock"] is not None:
            out += [("suggestion", d) for d in _release(st, ctx)]
        out += [("alert", a) for a in _cold_chain(st, ctx)]
    return st, out, duplicates


def _copy(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return {"drivers": {}, "pending": [], "done": [], "clock": None, "loads": {}, "readings": [], "cc": {},
                "alerts": {}}
    return {**state, "drivers": dict(state["drivers"]), "pending": list(state["pending"]), "done": list(state["done"]),
            "loads": dict(state.get("loads") or {}), "readings": list(state.get("readings") or []),
            "cc": dict(state.get("cc") or {}), "alerts": dict(state.get("alerts") or {})}


def _load(loads: dict[str, list[list[Any]]], v: Mapping[str, Any]) -> None:
    """A van's loads over time (``[at, orders]``, sorted, the last ``LOAD_HISTORY_MS``): which orders were on
    it when a reading was taken."""
    history = [e for e in loads.get(v["vehicle_id"], []) if e[0] != v["at"]] + [[v["at"], v["orders_on_board"]]]
    history.sort(key=lambda e: e[0])
    newest = history[-1][0]
    keep = [e for e in history if e[0] >= newest - LOAD_HISTORY_MS]
    loads[v["vehicle_id"]] = keep or history[-1:]


def driver_load(state: Mapping[str, Any] | None, driver_id: str) -> dict[str, Any] | None:
    """What the driver carries as of their newest status in the fleet state: ``at`` (event time),
    ``vehicle_id``, ``load_kg`` (orders on board, not yet delivered), ``order_ids`` (on the van then) and
    ``stop_order`` (the ones not visited yet, in the suggested visiting order); None for a driver the fleet view
    has not heard of."""
    d = None if state is None else (state.get("drivers") or {}).get(driver_id)
    if state is None or d is None:
        return None
    _, _, at, load_kg = d["fix"]
    return {"driver_id": driver_id, "vehicle_id": d["vehicle"], "at": at, "load_kg": load_kg,
            "order_ids": list(_on_board(state.get("loads") or {}, d["vehicle"], at)),
            "stop_order": list(d.get("route") or ())}


def _on_board(loads: Mapping[str, list[list[Any]]], vehicle: str, at: int) -> list[str]:
    orders: list[str] = []
    for when, on in loads.get(vehicle, []):
        if when > at:
            break
        orders = on
    return orders


def _cold_chain(st: dict[str, Any], ctx: FleetContext) -> list[dict[str, Any]]:
    """Vehicle readings the fleet clock (newest status) has passed by ``lateness_ms`` (for a van that never
    sent a status: the newest reading), in event-time order, through
    ``projections.cold_chain`` (breach and exposure) with the orders on the van at each reading: a trip
    starts at the first reading with orders on board and ends at the first with none."""
    if ctx.rules is None or not st["readings"]:
        return []
    low = -(2**62)
    mark = low if st["clock"] is None else st["clock"] - ctx.lateness_ms  # the statuses': the loads are known
    no_gps = low if st.get("sensor_clock") is None else st["sensor_clock"] - ctx.lateness_ms
    loads = st["loads"]

    def ready(r: Mapping[str, Any]) -> bool:
        return r["event_time"] <= (mark if r["vehicle_id"] in loads else no_gps)

    # the readings are kept sorted by (event time, event id): only those up to the later of the two marks can
    # be due (O(log n) when none is, where a scan of every held reading per input made the fold quadratic)
    readings = st["readings"]
    end = bisect_right(readings, max(mark, no_gps), key=_event_time)
    if not end:
        return []
    head = readings[:end]
    due = [r for r in head if ready(r)]
    if not due:
        return []
    del readings[:end]  # a memmove of the rest (a rebuilt list would touch every held reading's refcount)
    readings[0:0] = [r for r in head if not ready(r)]
    records: list[dict[str, Any]] = []
    for r in due:
        unit = f"{r['vehicle_id']}/{r['compartment']}"
        on = _on_board(st["loads"], r["vehicle_id"], r["event_time"])
        st["cc"][unit], changes = cold_chain.step(st["cc"].get(unit), r, ctx.rules, on)
        records += apply_changes(st["alerts"], changes)
    # a trip's exposure alert never re-opens; a breach's (one per compartment) re-opens with occurrences + 1
    st["alerts"] = {k: a for k, a in st["alerts"].items()
                    if a["status"] == "OPEN" or a["rule_id"] != "cold-chain-exposure"}
    return records


def _reading_order(r: Mapping[str, Any]) -> tuple[int, str]:
    return r["event_time"], r["event_id"]


def _event_time(r: Mapping[str, Any]) -> int:
    return r["event_time"]


def _status(drivers: dict[str, Any], v: Mapping[str, Any]) -> None:
    d = drivers.get(v["driver_id"])
    fix = [v["lat"], v["lng"], v["at"], v["load_kg"]]
    route = list(v.get("stop_order") or ())  # the suggested visiting order (DriverStatus v2)
    if d is None:
        drivers[v["driver_id"]] = {"vehicle": v["vehicle_id"], "fix": fix, "prev": None, "route": route}
    elif v["at"] > d["fix"][2]:
        drivers[v["driver_id"]] = {**d, "vehicle": v["vehicle_id"], "fix": fix, "prev": d["fix"], "route": route}
    elif v["at"] == d["fix"][2]:  # the load changed since the last ping (an order on or off the van)
        drivers[v["driver_id"]] = {**d, "vehicle": v["vehicle_id"], "fix": fix, "route": route}
    elif d["prev"] is None or v["at"] > d["prev"][2]:
        drivers[v["driver_id"]] = {**d, "prev": fix if v["at"] < d["fix"][2] else d["prev"]}


def _release(st: dict[str, Any], ctx: FleetContext) -> list[dict[str, Any]]:
    mark = st["clock"] - ctx.lateness_ms
    due = sorted((p for p in st["pending"] if p["requested_at"] <= mark),
                 key=lambda p: (p["requested_at"], p["request_id"]))
    if not due:
        return []
    st["pending"] = [p for p in st["pending"] if p["requested_at"] > mark]
    out = [decide(st["drivers"], p, ctx) for p in due]
    st["done"] = (st["done"] + [p["request_id"] for p in due])[-RECENT_DECISIONS:]
    return out


class FleetProjection:
    """``projections.keyed_batch`` projection over ``kuailv.fleet.v1``: one key, ``fleet``."""

    name = "fleet"

    def __init__(self, codec: Any, ctx: FleetContext) -> None:
        self.codec = codec
        self.ctx = ctx

    def decode(self, rec: SourceRecord) -> Keyed[tuple[str, dict[str, Any]]] | DeadLetter:
        decoded = decode_checked(self.codec, rec, _TYPES, _KEYS, _validate)
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(FLEET_KEY, (decoded.record_type, decoded.value))

    def fold(self, key: str, state: dict[str, Any] | None, items: Sequence[tuple[SourceRecord, Any]]) -> Folded:
        positions, fresh, duplicates = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=duplicates)
        new, outputs, dup = step(state, [ev for _, ev in fresh], self.ctx)
        new["pos"] = positions
        return Folded(new, changed=True, published=bool(outputs), outputs=outputs,
                      applied=len(fresh) - dup, duplicates=duplicates + dup)
