"""Geofence transitions of one driver, in event time, with hysteresis. Pure.

``step(state, inputs, ctx) -> Stepped`` folds one driver's inputs of a batch (GPS pings with
their fence hits from ``projections.fence_index``, and ``VanOrder`` records that say which
orders are on the van) into ENTER / EXIT / DWELL transitions.

Event time, per driver (Principle 2):

* The driver's clock is the newest ping time seen, in arrival order; its watermark is the clock
  minus ``allowed_lateness_ms``. Inputs wait in a buffer and are released in event-time order
  (time, then event id) once the watermark has passed them, so any reordering within the allowed
  lateness gives the same transitions.
* A ping older than the watermark *when it arrives* is **late**: it is counted and returned as a
  dead letter (``LATE_EVENT``), never applied out of order. This depends only on the order the
  driver's records arrive in, not on how an engine batches them (a late ping inside one big batch
  is as late as in a batch of one). A ping whose event id is in the buffer or among the last
  released ones is a duplicate (counted, ignored).
* A ``VanOrder`` is released like a ping (by its event time). One older than the watermark when it
  arrives applies at once (counted as ``late_assignments``): arrival at a customer comes long
  after the dispatch, so this does not change a transition in practice.
* A ``RoadConditions`` record is released like a ping too; the newest released is the van's conditions (the
  ETA model's traffic and rain features). One older than the watermark when it arrives is counted
  (``late_conditions``) and holds from then on if newer than the conditions held: it never changes an estimate
  already made. So a worker catching up, whose consumer reads a driver's GPS partition hours ahead of its
  conditions partition, estimates with older conditions than a replay would (docs/models.md, known gaps).
* Nothing is released by the wall clock: a silent driver's last ``allowed_lateness_ms`` of pings
  wait for the next ping (the GPS-silence rule, not this fold, covers a van that stops talking).

Per fence, a driver is *in* when a ping is inside the shape, *out* when beyond the exit margin,
and in the band between nothing changes. ENTER needs ``min_points`` consecutive in-pings and is
dated at the first of them; EXIT needs ``min_points`` consecutive out-pings, dated at the first
out-ping; DWELL fires once per visit, at the first ping ``dwell_ms`` after the ENTER (a re-entry
starts a new visit: no early dwell after exit and re-entry). Customer sites are one circle per
order on the van (``FenceSet.customer_sites``), tested by great-circle distance; a delivered
order's site stays until the driver has left it, so "left customer" is seen.

With ETAs on (``GeoContext.eta``) the fold also keeps each order's tracking record: its ETA
(``projections.van_eta``) and the stage times of its dispatch (arrived at the warehouse, arrived
at and left the customer: ``projections.stage_times``), published as ``OrderEta`` records. They are
derived facts about the van, never order events: the order aggregate stays their only writer.

The state is JSON-able (orjson in Redis and Flink state); fences the driver is not in and not
entering are not stored, so a step costs O(hits of its pings), not O(fences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections import stage_times, van_eta
from projections.fences import Fence, FenceSet
from projections.geo import haversine_m
from projections.van_eta import EtaSettings

SITE_PREFIX = "customer-site/"
# per-site memory that survives a newer VanOrder of the same order: notices sent, the ETA track, stage times
# and the last OrderEta published (projections.stage_times)
_KEPT = ("noticed", "soon", "soon_done", "eta", "eta_at", "eta_sent", "visited", "stages", "stages_due", "last",
         "b0", "risk", "risk_sent", "late")
RECENT_IDS = 64
DEFAULT_LATENESS_MS = 30_000


@dataclass(frozen=True, slots=True)
class GeoContext:
    fences: FenceSet
    allowed_lateness_ms: int = DEFAULT_LATENESS_MS
    eta: EtaSettings | None = None  # ETAs of the orders on board (projections.van_eta); None: none
    silence_ms: int | None = None  # gps-silent: a gap this long between released pings with orders on board
    status_ms: int | None = None  # DriverStatus for the fleet view every this much released event time (None: none)
    by_id: Mapping[str, Fence] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", self.fences.by_id())


@dataclass(slots=True)
class Stepped:
    state: dict[str, Any]
    transitions: list[dict[str, Any]] = field(default_factory=list)
    late: list[tuple[int, str]] = field(default_factory=list)  # (index into inputs, reason)
    # (notice kind, opening, facts): "driver-nearby" (site ENTER/EXIT), "arriving-soon" (ETA crossing, site ENTER)
    notices: list[tuple[str, bool, dict[str, Any]]] = field(default_factory=list)
    # OrderEta records: estimates (projections.van_eta) and stage times (projections.stage_times)
    etas: list[dict[str, Any]] = field(default_factory=list)
    # gps-silent decided from the driver's own stream, in event order: {"open": True, "last": ping before the
    # silence, "orders", "lat", "lng", "vehicle_id"} or {"open": False, "at", "by": "ping"|"unloaded", ...}
    silences: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)  # DriverStatus records (GeoContext.status_ms)
    duplicates: int = 0
    applied: int = 0


def new_state() -> dict[str, Any]:
    return {"clock": None, "released": None, "buf": [], "recent": [], "fences": {}, "sites": {}, "late": 0,
            "late_assignments": 0}


def step(state: dict[str, Any] | None, inputs: Sequence[tuple[str, Mapping[str, Any], Any]],
         ctx: GeoContext) -> Stepped:
    """``inputs``: (record type, value, hits) in arrival order; hits are the ping's
    ``FenceIndex.classify`` result (None for a VanOrder). Returns the new state (the input state
    is not modified) and the transitions released by this step, in event-time order."""
    st = _copy(state)
    out = Stepped(st)
    buf: list[list[Any]] = st["buf"]
    pending_ids = {entry[1] for entry in buf}
    recent = st["recent"]
    for i, (record_type, value, hits) in enumerate(inputs):
        if record_type == "GpsPing":
            at, eid = value["event_time"], value["event_id"]
            if eid in pending_ids or eid in recent:
                out.duplicates += 1
                continue
            clock = st["clock"]
            if clock is not None and at < clock - ctx.allowed_lateness_ms:
                st["late"] += 1
                out.late.append((i, f"ping at {at} is {clock - at} ms older than driver {value['driver_id']}'s "
                                    f"newest ping at {clock} (allowed lateness {ctx.allowed_lateness_ms} ms)"))
                continue
            buf.append([at, eid, "P", [value["lat"], value["lng"], value["vehicle_id"], hits]])
            pending_ids.add(eid)
            if st["clock"] is None or at > st["clock"]:
                st["clock"] = at
                st["clock_fix"] = [value["lat"], value["lng"], value["vehicle_id"]]
        elif record_type == "RoadConditions":  # the newest released one is the van's conditions (model features)
            at = value["event_time"]
            cond = [value["traffic_index"], value["rain_mm_h"], at]
            clock = st["clock"]
            if clock is not None and at < clock - ctx.allowed_lateness_ms:
                st["late_conditions"] = st.get("late_conditions", 0) + 1
                _conditions(st, cond)  # late: from now on (if newer than the conditions held), never retroactively
            else:
                buf.append([at, value["event_id"], "C", cond])
        else:  # VanOrder: (order id, version) identifies it
            at = value["event_time"]
            clock = st["clock"]
            if clock is not None and at < clock - ctx.allowed_lateness_ms:
                st["late_assignments"] += 1
                _assign(st, value, out.notices, ctx)
                continue
            buf.append([at, f"{value['order_id']}@{value['order_version']}", "V", dict(value)])
        out.applied += 1
    if st["clock"] is None:
        return out
    watermark = st["clock"] - ctx.allowed_lateness_ms
    ready = [e for e in buf if e[0] <= watermark]
    if not ready:
        return out
    ready.sort(key=lambda e: (e[0], e[1]))
    st["buf"] = [e for e in buf if e[0] > watermark]
    driver = inputs[0][1]["driver_id"]
    for at, eid, kind, payload in ready:
        if kind == "C":
            _conditions(st, payload)
            continue
        if ctx.silence_ms is not None:
            _silence_check(st, out, at, ctx.silence_ms)
        if kind == "V":
            _assign(st, payload, out.notices, ctx)
            if st.get("silent_since") is not None and not on_board(st):
                out.silences.append({"open": False, "at": at, "by": "unloaded", "vehicle_id": st.get("vehicle")})
                st["silent_since"] = None
            if ctx.status_ms is not None:
                _status(st, out, driver, ctx.status_ms)
            continue
        if st.get("silent_since") is not None and at > st["silent_since"]:  # not a buffered ping from before
            out.silences.append({"open": False, "at": at, "by": "ping", "vehicle_id": payload[2]})
            st["silent_since"] = None
        _ping(st, out, ctx, driver, at, eid, payload)
        recent.append(eid)
        st["released"] = at
        st["fix"] = [payload[0], payload[1]]
        st["vehicle"] = payload[2]
        if ctx.status_ms is not None:
            _status(st, out, driver, ctx.status_ms)
    if len(recent) > RECENT_IDS:
        del recent[: len(recent) - RECENT_IDS]
    return out


def _conditions(st: dict[str, Any], cond: list[Any]) -> None:
    """Hold ``cond`` ([traffic index, rain mm/h, at]) unless the conditions held are newer."""
    held = st.get("cond")
    if held is None or cond[2] >= held[2]:
        st["cond"] = cond


def _status(st: dict[str, Any], out: Stepped, driver: str, interval_ms: int) -> None:
    """A ``DriverStatus`` for the fleet view (``projections.fleet``), decided per released input so every
    batching gives the same records: the last released fix and the load on board, when ``interval_ms``
    of released event time passed since the last one or the orders on board changed."""
    released, fix = st.get("released"), st.get("fix")
    if released is None or fix is None:
        return
    orders = on_board(st)
    last = st.get("status")
    if last is not None and released - last[0] < interval_ms and last[1] == orders:
        return
    sites = st["sites"]
    st["status"] = [released, orders]
    out.statuses.append({"driver_id": driver, "vehicle_id": st["vehicle"], "lat": fix[0], "lng": fix[1],
                         "at": released, "load_kg": round(sum(sites[o].get("kg") or 0.0 for o in orders), 3),
                         "orders_on_board": orders,
                         "stop_order": [o for o in st.get("route") or () if o in orders and
                                        sites[o].get("visited") != sites[o]["dispatch"]]})


def _silence_check(st: dict[str, Any], out: Stepped, at: int, silence_ms: int) -> None:
    """Before anything at ``at`` is released: was the driver silent ``silence_ms`` since its last ping,
    with orders on board at that moment? Decided in event order (a VanOrder that empties the van
    later in the gap does not undo it), so every engine and batching decides the same."""
    last = st["released"]
    if last is None or st.get("silent_since") is not None or at - last < silence_ms:
        return
    orders = on_board(st)
    if orders:
        fix = st.get("fix") or [None, None]
        out.silences.append({"open": True, "last": last, "orders": orders, "lat": fix[0], "lng": fix[1],
                             "vehicle_id": st.get("vehicle")})
        st["silent_since"] = last


def on_board(st: Mapping[str, Any]) -> list[str]:
    """The orders on the van now: assigned, and not yet delivered, taken off or visited."""
    orders = [oid for oid, s in st["sites"].items() if s["state"] == "ON_BOARD" and s.get("visited") != s["dispatch"]]
    if len(orders) > 1:
        orders.sort()
    return orders


def _copy(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return new_state()
    st = dict(state)
    st["buf"] = list(state["buf"])
    st["recent"] = list(state["recent"])
    st["fences"] = {k: dict(v) for k, v in state["fences"].items()}
    st["sites"] = dict(state["sites"])
    return st


def _assign(st: dict[str, Any], v: Mapping[str, Any], notices: list[tuple[str, bool, dict[str, Any]]],
            ctx: GeoContext) -> None:
    sites = st["sites"]
    cur = sites.get(v["order_id"])
    if cur is not None and cur["version"] >= v["order_version"]:
        return
    same_dispatch = cur is not None and cur["dispatch"] == v["dispatch_count"] and "disp_at" in cur
    sites[v["order_id"]] = {"version": v["order_version"], "state": v["state"], "lat": v["destination"]["lat"],
                            "lng": v["destination"]["lng"], "dispatch": v["dispatch_count"],
                            "customer_id": v["customer_id"], "warehouse_id": v["warehouse_id"], "kg": v["weight_kg"],
                            "ws": v["window_start"], "we": v["window_end"],
                            "disp_at": cur["disp_at"] if same_dispatch else v["event_time"],
                            **({k: cur[k] for k in _KEPT if k in cur} if cur is not None else {})}
    if ctx.eta is not None and v["state"] == "ON_BOARD" and (cur is None or cur["dispatch"] != v["dispatch_count"]):
        stage_times.on_dispatch(st, v["order_id"], ctx.by_id, v["event_time"])  # a new dispatch: stages afresh
    _drop_done_sites(st, notices, v["event_time"])


def _drop_done_sites(st: dict[str, Any], notices: list[tuple[str, bool, dict[str, Any]]] | None = None,
                     at: int | None = None) -> None:
    fences = st["fences"]
    for oid in [o for o, s in st["sites"].items() if s["state"] != "ON_BOARD"]:
        f = fences.get(SITE_PREFIX + oid)
        if f is None or not f["in"]:
            site = st["sites"].pop(oid)
            fences.pop(SITE_PREFIX + oid, None)
            if notices is None:
                continue
            facts = {"order_id": oid, "dispatch": site["dispatch"], "at": at, "customer_id": site["customer_id"],
                     "warehouse_id": site["warehouse_id"]}
            if site.get("soon") == site["dispatch"] and not site.get("soon_done"):
                notices.append(("arriving-soon", False, facts))
            van_eta.clear_likely_late(site, notices, facts, "unloaded")


def _ping(st: dict[str, Any], out: Stepped, ctx: GeoContext, driver: str, at: int, eid: str,
          payload: list[Any]) -> None:
    lat, lng, vehicle, hits = payload
    transitions = out.transitions
    first = len(transitions)
    zones: dict[str, bool] = {fid: inside for fid, inside in hits or ()}
    sites = st["sites"]
    if sites:
        cs = ctx.fences.customer_sites
        # A degree box first (cheap, never too small): only sites inside it get the great-circle test.
        box_lat = cs.exit_m / 110_000.0
        box_lng = box_lat / max(0.05, math.cos(math.radians(lat)))
        for oid, s in sites.items():
            if abs(s["lat"] - lat) > box_lat or abs(s["lng"] - lng) > box_lng:
                continue
            d = haversine_m(lat, lng, s["lat"], s["lng"])
            if d <= cs.exit_m:
                zones[SITE_PREFIX + oid] = d <= cs.enter_m
    fences = st["fences"]
    by_id = ctx.by_id
    for fid in sorted(zones.keys() | fences.keys()) if len(zones) + len(fences) > 1 else (*zones, *fences):
        zone = zones.get(fid)  # True: in, False: band, None: out
        f = fences.get(fid)
        if f is None:
            if zone is not True:
                continue
            f = fences[fid] = {"in": False, "run": 0, "run_at": None, "since": None, "dwelt": False}
        if fid.startswith(SITE_PREFIX):
            cs = ctx.fences.customer_sites
            min_points, dwell_ms = cs.min_points, cs.dwell_ms
        else:
            fence = by_id.get(fid)
            if fence is None:  # the fence set changed under a driver who was in a removed fence
                del fences[fid]
                continue
            min_points, dwell_ms = fence.hysteresis.min_points, fence.hysteresis.dwell_ms
        if not f["in"]:
            if zone is True:
                if f["run"] == 0:
                    f["run_at"] = at
                f["run"] += 1
                if f["run"] >= min_points:
                    f.update({"in": True, "run": 0, "since": f["run_at"], "dwelt": False})
                    transitions.append(_transition(ctx, st, driver, vehicle, fid, "ENTER", f["since"], lat, lng, eid,
                                                   None))
            if not f["in"] and zone is not True:
                del fences[fid]  # a run of in-pings broken before it counted
            continue
        if zone is None:
            if f["run"] == 0:
                f["run_at"] = at
            f["run"] += 1
            if f["run"] >= min_points:
                transitions.append(_transition(ctx, st, driver, vehicle, fid, "EXIT", f["run_at"], lat, lng, eid,
                                               f["since"]))
                del fences[fid]
            continue
        f["run"] = 0
        if not f["dwelt"] and at - f["since"] >= dwell_ms:
            f["dwelt"] = True
            transitions.append(_transition(ctx, st, driver, vehicle, fid, "DWELL", at, lat, lng, eid, f["since"]))
    if len(transitions) > first:
        _notices(st, transitions[first:], out.notices)
    if ctx.eta is not None:
        if len(transitions) > first:
            stage_times.from_transitions(st, transitions[first:])
        van_eta.update(st, ctx.eta, driver, vehicle, lat, lng, at, out.etas, out.notices)
        stage_times.flush(st, driver, vehicle, at, out.etas)
    for s in sites.values():
        if s["state"] != "ON_BOARD":
            _drop_done_sites(st, out.notices, at)
            break


def _notices(st: dict[str, Any], transitions: list[dict[str, Any]],
             notices: list[tuple[str, bool, dict[str, Any]]]) -> None:
    """"Driver within N m": open at the first ENTER of an order's site per dispatch (never again for
    that attempt), resolve at the EXIT. The ENTER also resolves an open "arriving soon"."""
    for t in transitions:
        if t["fence_kind"] != "CUSTOMER_SITE" or t["kind"] == "DWELL":
            continue
        site = st["sites"].get(t["order_id"])
        if site is None:
            continue
        facts = {**t, "dispatch": site["dispatch"], "customer_id": site["customer_id"],
                 "warehouse_id": site["warehouse_id"]}
        if t["kind"] == "ENTER":
            if site.get("soon") == site["dispatch"] and not site.get("soon_done"):
                site = {**site, "soon_done": True}
                notices.append(("arriving-soon", False, facts))
            if site.get("noticed") != site["dispatch"]:
                site = {**site, "noticed": site["dispatch"]}
                notices.append(("driver-nearby", True, facts))
                van_eta.arrived(st, site, t["at"], notices, facts)
            st["sites"][t["order_id"]] = site
        elif t["kind"] == "EXIT":
            # the van has been to the door and left: no arrival left to estimate for this dispatch
            st["sites"][t["order_id"]] = {**site, "visited": site["dispatch"]}
            if site.get("noticed") == site["dispatch"]:
                notices.append(("driver-nearby", False, facts))


def _transition(ctx: GeoContext, st: dict[str, Any], driver: str, vehicle: str, fid: str, kind: str, at: int,
                lat: float, lng: float, eid: str, entered_at: int | None) -> dict[str, Any]:
    if fid.startswith(SITE_PREFIX):
        oid = fid[len(SITE_PREFIX):]
        site = st["sites"][oid]
        fence_kind, version, order_id, warehouse_id = "CUSTOMER_SITE", f"order-v{site['version']}", oid, None
    else:
        fence = ctx.by_id[fid]
        fence_kind, version, order_id, warehouse_id = fence.kind, ctx.fences.version, None, fence.warehouse_id
    return {"transition_id": f"{driver}/{fid}/{kind}/{at}", "driver_id": driver, "vehicle_id": vehicle,
            "fence_id": fid, "fence_kind": fence_kind, "fence_version": version, "order_id": order_id,
            "warehouse_id": warehouse_id, "kind": kind, "at": at, "lat": lat, "lng": lng, "entered_at": entered_at,
            "ping_event_id": eid}
