"""Re-dispatch after an incident: propose the nearest driver who can take over an order. Pure.

Seed scenario: a driver reports a traffic accident; the goods must be picked up at the incident
location by another van and taken on to the customer. ``suggest`` decides who, and explains every
driver it passed over, so an operator (or an alert) can see why. All times are epoch ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from projections.eta import DEFAULT_ROAD_FACTOR, EtaEstimator, Stop, VanSnapshot
from projections.geo import haversine_m

MAX_FIX_AGE_MS = 5 * 60_000
FUTURE_TOLERANCE_MS = 60_000  # a fix this far ahead of the decision time is still believed (clock skew)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A driver who might take the order: last fix (``lat``, ``lng``) at ``at``, van capacity and load."""

    driver_id: str
    vehicle_id: str
    lat: float
    lng: float
    at: int
    capacity_kg: float
    load_kg: float
    available: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Hand ``order_id`` from ``from_driver_id`` to ``to_driver_id``: ``distance_m`` by road from the
    candidate to the incident, ``eta`` at the order's destination after picking the goods up there."""

    order_id: str
    from_driver_id: str
    to_driver_id: str
    to_vehicle_id: str
    distance_m: float
    eta: int
    at: int  # decision time
    reason: str
    considered: int  # candidates looked at
    excluded: dict[str, str]  # driver_id -> why passed over


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``suggest``: a ``suggestion``, or None with ``reason`` saying why nobody."""

    order_id: str
    from_driver_id: str
    at: int
    suggestion: Suggestion | None
    reason: str
    considered: int
    excluded: dict[str, str]


def _age(ms: int) -> str:
    return f"{ms // 60_000} min" if ms >= 60_000 else f"{ms // 1000} s"


def exclusion(c: Candidate, from_driver_id: str, weight_kg: float, at: int, max_fix_age_ms: int) -> str | None:
    """Why ``c`` cannot take the order (the first reason that applies), or None when it can."""
    if c.driver_id == from_driver_id:
        return "reporting driver"
    if not c.available:
        return "unavailable"
    if at - c.at > max_fix_age_ms:
        return f"position {_age(at - c.at)} old"
    if c.at - at > FUTURE_TOLERANCE_MS:
        return f"position {_age(c.at - at)} in the future"
    if c.capacity_kg - c.load_kg < weight_kg:
        return f"full: {c.load_kg:g}/{c.capacity_kg:g} kg, order needs {weight_kg:g} kg"
    return None


def suggest(order_id: str, from_driver_id: str, incident_lat: float, incident_lng: float,
            dest_lat: float, dest_lng: float, weight_kg: float, at: int, candidates: Iterable[Candidate],
            estimator: EtaEstimator, max_fix_age_ms: int = MAX_FIX_AGE_MS) -> Decision:
    """Choose who takes over ``order_id`` at decision time ``at``.

    Eligible: not the reporting driver, available, a fix at most ``max_fix_age_ms`` before ``at``
    (and at most ``FUTURE_TOLERANCE_MS`` after it), and ``capacity_kg - load_kg >= weight_kg``.
    Among the eligible, the nearest to the incident by road distance (great-circle × the
    estimator's ``road_factor``, or ``DEFAULT_ROAD_FACTOR`` when it has none) wins; ties go to the
    smallest ``driver_id``. The ETA is the estimator's for the destination with stops
    [incident (pickup), destination], the van starting from its last fix at ``at`` with unknown speed.

    Always returns a ``Decision`` (never None), so the caller can tell "nobody qualified, and why"
    (``excluded``) from "nobody to ask" (``considered == 0``); ``Decision.suggestion`` is None in
    both. A duplicate ``driver_id`` among the candidates is a ValueError.

    O(n) over the candidates (one distance each, one estimate for the winner). A later scale issue
    may index candidates spatially and pass only those near the incident.
    """
    if not (math.isfinite(weight_kg) and weight_kg >= 0):
        raise ValueError(f"suggest: order {order_id}: weight_kg must be >= 0, got {weight_kg}")
    if max_fix_age_ms < 0:
        raise ValueError(f"suggest: order {order_id}: max_fix_age_ms must be >= 0, got {max_fix_age_ms}")
    road_factor = getattr(estimator, "road_factor", DEFAULT_ROAD_FACTOR)
    excluded: dict[str, str] = {}
    seen: set[str] = set()
    best: tuple[float, str, Candidate] | None = None
    for c in candidates:
        if c.driver_id in seen:
            raise ValueError(f"suggest: order {order_id}: driver {c.driver_id} is a candidate twice")
        seen.add(c.driver_id)
        why = exclusion(c, from_driver_id, weight_kg, at, max_fix_age_ms)
        if why is not None:
            excluded[c.driver_id] = why
            continue
        rank = (haversine_m(c.lat, c.lng, incident_lat, incident_lng) * road_factor, c.driver_id, c)
        if best is None or rank[:2] < best[:2]:
            best = rank
    considered = len(seen)
    if best is None:
        reason = ("no candidates" if considered == 0
                  else f"no eligible driver: all {considered} candidates excluded")
        return Decision(order_id, from_driver_id, at, None, reason, considered, excluded)
    distance_m, _, chosen = best
    van = VanSnapshot(chosen.driver_id, chosen.lat, chosen.lng, at, None)
    stops = [Stop(order_id, incident_lat, incident_lng), Stop(order_id, dest_lat, dest_lng)]
    eta = estimator.estimate(van, stops)[-1].eta
    reason = (f"nearest eligible driver: {distance_m / 1000:.1f} km by road to the incident, "
              f"{chosen.capacity_kg - chosen.load_kg:g} kg free; {len(excluded)} of {considered} excluded")
    suggestion = Suggestion(order_id, from_driver_id, chosen.driver_id, chosen.vehicle_id, distance_m, eta, at,
                            reason, considered, excluded)
    return Decision(order_id, from_driver_id, at, suggestion, reason, considered, excluded)
