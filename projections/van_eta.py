"""ETAs of the orders on a van, updated from the driver's pings in event time. Pure.

Runs inside the per-driver geofence fold (``projections.geofence``), which already releases the
driver's pings in event-time order and knows the orders on board (``VanOrder``). Every
``interval_ms`` of event time (30 s by default, not every ping: a route estimate costs a few
haversines per stop) it

* adds the ping to the van's speed track (``projections.eta.track``: mean speed over 5 min),
* orders the stops on board by nearest neighbour (kept until the set of stops changes); a stop
  the van has entered and left is done for that dispatch, whether or not its signature has
  arrived yet,
* asks the ``EtaEstimator`` (``DistanceSpeedEta`` now; a learnt model later, same interface),
* emits an ``OrderEta`` record for an order whose ETA moved by at least ``min_change_ms`` or was
  last sent ``refresh_ms`` ago (so consumers get news, not a stream of identical estimates), and
  for the first estimate of a dispatch or one that carries stage times not yet published; every
  record carries the stage times of the dispatch (``projections.stage_times``) and ``updated_at``,
* decides the "arriving in about 10 minutes" notice: the time left crosses the threshold
  (``projections.eta.arriving_soon``), once per order and dispatch,
* with a learnt estimator (``models.learnt_eta``), carries each order's delay risk (``late_risk``) in the
  record and decides the "likely late" notice: open when the risk reaches ``likely_late[0]``, resolved when it
  falls below ``likely_late[1]``, when the van reaches the door or when the order leaves the van.

The estimator sees what the fold knows at the ping (``VanSnapshot``): the load on board, the newest
``RoadConditions`` released (``st["cond"]``), the driver's pace (``st["pace"]``: an exponentially
weighted mean of actual / baseline time of the driver's recent legs, from ``b0``, the baseline estimate
taken at the first estimate of each dispatch, and the arrival at the door) and each stop's window.

Everything stays in the driver's JSON state (``speed``, ``route``, ``eta_at``, ``pace`` and, per site,
``eta``/``eta_at``/``eta_sent``/``soon``/``last``/``b0``/``risk``/``late``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections import stage_times
from projections.eta import (
    DistanceSpeedEta,
    EtaEstimator,
    Stop,
    VanSnapshot,
    arriving_soon,
    speed_mps,
    track,
    visit_order,
)

PACE_WEIGHT = 0.3  # weight of the newest leg in the driver's pace
PACE_BOUNDS = (0.25, 6.0)  # a leg's actual / baseline ratio is clamped to this (a crash or a GPS gap is not pace)
MIN_BASELINE_MS = 60_000  # legs the baseline put under a minute say nothing about pace
# (van lat, van lng, at, stops on board) -> order ids in the suggested visiting order
RoutePlanner = Callable[[float, float, int, Sequence[Stop]], list[str]]


@dataclass(frozen=True, slots=True)
class EtaSettings:
    estimator: EtaEstimator
    name: str = "distance-speed/v1"  # recorded in every OrderEta
    interval_ms: int = 30_000
    min_change_ms: int = 60_000
    refresh_ms: int = 5 * 60_000
    soon_ms: int | None = 10 * 60_000  # None: no arriving-soon notices
    likely_late: tuple[float, float] | None = None  # (open at risk >=, resolve below); None: no likely-late notices
    min_risk_change: float = 0.05  # a risk move this large publishes the record too
    planner: RoutePlanner | None = None  # the visiting order of the stops; None: nearest neighbour
    baseline: DistanceSpeedEta = field(default_factory=DistanceSpeedEta)  # for the driver's pace (b0)


def update(st: dict[str, Any], cfg: EtaSettings, driver: str, vehicle: str, lat: float, lng: float, at: int,
           etas: list[dict[str, Any]], notices: list[tuple[str, bool, dict[str, Any]]]) -> None:
    """Called for every released ping of the driver; does nothing until ``interval_ms`` has passed."""
    last = st.get("eta_at")
    if last is not None and at - last < cfg.interval_ms:
        return
    st["eta_at"] = at
    st["speed"] = track(st.get("speed"), lat, lng, at)
    sites = st["sites"]
    # the same set as projections.geofence.on_board (inlined: that module imports this one)
    on_board = sorted(oid for oid, s in sites.items() if s["state"] == "ON_BOARD" and s.get("visited") != s["dispatch"])
    if not on_board:
        st.pop("route", None)
        return
    route = st.get("route")
    if route is None or sorted(route) != on_board:
        stops = [_stop(oid, sites[oid]) for oid in on_board]
        route = st["route"] = (cfg.planner(lat, lng, at, stops) if cfg.planner is not None
                               else [s.order_id for s in visit_order(lat, lng, stops)])
    speed = speed_mps(st["speed"])
    cond = st.get("cond")
    van = VanSnapshot(driver, lat, lng, at, speed, load_kg=round(sum(sites[o].get("kg") or 0.0 for o in on_board), 3),
                      traffic_index=cond[0] if cond else None, rain_mm_h=cond[1] if cond else None,
                      driver_pace=st.get("pace"), stops_total=len(on_board))
    stops = [_stop(oid, sites[oid]) for oid in route]
    estimates = cfg.estimator.estimate(van, stops)
    first = [i for i, stop in enumerate(stops) if _b0_missing(sites[stop.order_id])]
    if first:  # the baseline's estimate at the first estimate of a dispatch: the driver's pace compares with it
        base = estimates if cfg.estimator is cfg.baseline else cfg.baseline.estimate(van, stops)
        for i in first:
            site = sites[stops[i].order_id]
            sites[stops[i].order_id] = {**site, "b0": [site["dispatch"], at, base[i].eta - at]}
    for e in estimates:
        site = sites[e.order_id]
        new = {**site, "eta": e.eta, "eta_at": at}
        risk = None if e.late_risk is None else round(e.late_risk, 4)
        if risk is not None:
            new["risk"] = risk
        if _publish(site, e.eta, at, cfg) or (risk is not None and abs(risk - (site.get("risk_sent") or 0.0))
                                              >= cfg.min_risk_change):
            new["eta_sent"] = at
            if risk is not None:
                new["risk_sent"] = risk
            record = {"order_id": e.order_id, "driver_id": driver, "vehicle_id": vehicle,
                      "dispatch_count": site["dispatch"], "eta": e.eta, "computed_at": at,
                      "distance_m": round(e.distance_m, 1), "stops_before": e.stops_before,
                      "speed_kmh": None if speed is None else round(speed * 3.6, 2), "estimator": cfg.name,
                      "late_risk": risk, "window_end": site.get("we"), **stage_times.of(site), "updated_at": at}
            etas.append(record)
            stage_times.published(new, record)
        if risk is not None and cfg.likely_late is not None:
            _likely_late(e.order_id, new, risk, e.eta, at, cfg, driver, vehicle, notices)
        if cfg.soon_ms is not None and site.get("soon") != site["dispatch"] and arriving_soon(
                site.get("eta"), e.eta, at, cfg.soon_ms, previous_at=site.get("eta_at")):
            new["soon"] = site["dispatch"]
            notices.append(("arriving-soon", True, {"order_id": e.order_id, "driver_id": driver,
                                                    "vehicle_id": vehicle, "dispatch": site["dispatch"],
                                                    "customer_id": site["customer_id"],
                                                    "warehouse_id": site["warehouse_id"], "at": at, "eta": e.eta,
                                                    "distance_m": e.distance_m, "lat": lat, "lng": lng}))
        sites[e.order_id] = new


def _publish(site: dict[str, Any], eta: int, at: int, cfg: EtaSettings) -> bool:
    """Publish this estimate? When it moved by ``min_change_ms``, was last sent ``refresh_ms`` ago, is the
    first of the order's dispatch, or carries stage times not yet published (``projections.stage_times``)."""
    sent, last = site.get("eta_sent"), site.get("last")
    return (site.get("eta") is None or abs(eta - site["eta"]) >= cfg.min_change_ms or sent is None
            or at - sent >= cfg.refresh_ms or bool(site.get("stages_due"))
            or (last is not None and last["dispatch_count"] != site["dispatch"]))


def _stop(order_id: str, site: dict[str, Any]) -> Stop:
    return Stop(order_id, site["lat"], site["lng"], window_start=site.get("ws"), window_end=site.get("we"),
                kg=site.get("kg"), dispatched_at=site.get("disp_at"))


def _b0_missing(site: dict[str, Any]) -> bool:
    b0 = site.get("b0")
    return b0 is None or b0[0] != site["dispatch"]


def _likely_late(order_id: str, site: dict[str, Any], risk: float, eta: int, at: int, cfg: EtaSettings,
                 driver: str, vehicle: str, notices: list[tuple[str, bool, dict[str, Any]]]) -> None:
    """Open "likely late" at ``risk >= open``, resolve it below ``resolve`` (hysteresis); before the door only."""
    assert cfg.likely_late is not None
    open_at, resolve_below = cfg.likely_late
    dispatch = site["dispatch"]
    state = site.get("late")
    is_open = state is not None and state[0] == dispatch and state[1]
    if site.get("noticed") == dispatch or site.get("we") is None:  # at the door already, or no window to miss
        return
    facts = {"order_id": order_id, "driver_id": driver, "vehicle_id": vehicle, "dispatch": dispatch,
             "customer_id": site["customer_id"], "warehouse_id": site["warehouse_id"], "at": at}
    if not is_open and risk >= open_at:
        site["late"] = [dispatch, True]
        notices.append(("likely-late", True, {**facts, "late_risk": risk, "eta": eta, "window_end": site["we"],
                                              "estimator": cfg.name}))
    elif is_open and risk < resolve_below:
        site["late"] = [dispatch, False]
        notices.append(("likely-late", False, {**facts, "by": "risk"}))


def clear_likely_late(site: dict[str, Any], notices: list[tuple[str, bool, dict[str, Any]]], facts: dict[str, Any],
                      by: str) -> None:
    """Resolve an open "likely late" of ``site`` (the van reached the door, or the order left the van)."""
    state = site.get("late")
    if state is not None and state[0] == site["dispatch"] and state[1]:
        site["late"] = [state[0], False]
        notices.append(("likely-late", False, {**facts, "by": by}))


def arrived(st: dict[str, Any], site: dict[str, Any], at: int, notices: list[tuple[str, bool, dict[str, Any]]],
            facts: dict[str, Any]) -> None:
    """The van entered the order's site for the first time this dispatch (``site`` is the fold's fresh copy):
    fold the leg into the driver's pace and resolve an open "likely late"."""
    b0 = site.get("b0")
    if b0 is not None and b0[0] == site["dispatch"] and b0[2] >= MIN_BASELINE_MS:
        ratio = min(max((at - b0[1]) / b0[2], PACE_BOUNDS[0]), PACE_BOUNDS[1])
        pace = st.get("pace")
        st["pace"] = round(ratio if pace is None else (1 - PACE_WEIGHT) * pace + PACE_WEIGHT * ratio, 4)
    clear_likely_late(site, notices, facts, "arrived")
