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
  (``projections.eta.arriving_soon``), once per order and dispatch.

Everything stays in the driver's JSON state (``speed``, ``route``, ``eta_at`` and, per site,
``eta``/``eta_at``/``eta_sent``/``soon``/``last``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections import stage_times
from projections.eta import EtaEstimator, Stop, VanSnapshot, arriving_soon, speed_mps, track, visit_order


@dataclass(frozen=True, slots=True)
class EtaSettings:
    estimator: EtaEstimator
    name: str = "distance-speed/v1"  # recorded in every OrderEta
    interval_ms: int = 30_000
    min_change_ms: int = 60_000
    refresh_ms: int = 5 * 60_000
    soon_ms: int | None = 10 * 60_000  # None: no arriving-soon notices


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
        stops = [Stop(oid, sites[oid]["lat"], sites[oid]["lng"]) for oid in on_board]
        route = st["route"] = [s.order_id for s in visit_order(lat, lng, stops)]
    speed = speed_mps(st["speed"])
    van = VanSnapshot(driver, lat, lng, at, speed)
    for e in cfg.estimator.estimate(van, [Stop(oid, sites[oid]["lat"], sites[oid]["lng"]) for oid in route]):
        site = sites[e.order_id]
        new = {**site, "eta": e.eta, "eta_at": at}
        if _publish(site, e.eta, at, cfg):
            new["eta_sent"] = at
            record = {"order_id": e.order_id, "driver_id": driver, "vehicle_id": vehicle,
                      "dispatch_count": site["dispatch"], "eta": e.eta, "computed_at": at,
                      "distance_m": round(e.distance_m, 1), "stops_before": e.stops_before,
                      "speed_kmh": None if speed is None else round(speed * 3.6, 2), "estimator": cfg.name,
                      **stage_times.of(site), "updated_at": at}
            etas.append(record)
            stage_times.published(new, record)
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
