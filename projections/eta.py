"""Van speed from recent pings, ETAs along a van's remaining stops, arrival notices. Pure.

Speed state is plain JSON (``{"fixes": [[at, lat, lng], ...]}``, oldest first) so engines can
keep it with orjson in Redis or a Flink ``MapState``. The window is event time: it ends at the
newest fix held, never at the clock. ``EtaEstimator`` is the seam a learnt model (a later
issue) plugs into; ``DistanceSpeedEta`` is the baseline behind it. All times are epoch ms.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from projections.geo import haversine_m

SPEED_WINDOW_MS = 5 * 60_000  # fixes older than this before the newest fix are dropped
MAX_FIXES = 64  # at most this many fixes held (the newest)
MIN_SPEED_SPAN_MS = 30_000  # a speed needs fixes spanning at least this long
ARRIVING_SOON_MS = 10 * 60_000
ARRIVED_RADIUS_M = 150.0
DEFAULT_ROAD_FACTOR = 1.35  # road distance / great-circle distance in the city


# --- speed from pings ------------------------------------------------------------------------

def track(state: dict[str, Any] | None, lat: float, lng: float, at: int,
          window_ms: int = SPEED_WINDOW_MS, max_fixes: int = MAX_FIXES) -> dict[str, Any]:
    """A new speed state with the fix (``lat``, ``lng``) at ``at`` added; ``state`` is not mutated.

    Fixes are kept in event-time order; a late ping is inserted in place. A ping with the same
    ``at`` as a held fix is a duplicate and ignored (the first one held wins). Fixes older than
    ``window_ms`` before the newest are evicted, then only the newest ``max_fixes`` kept, so the
    result for a set of pings with distinct times does not depend on their arrival order.
    """
    if not (math.isfinite(lat) and math.isfinite(lng)):
        raise ValueError(f"track: fix at {at} has a non-finite position ({lat}, {lng})")
    if window_ms <= 0 or max_fixes < 2:
        raise ValueError(f"track: window_ms {window_ms} must be > 0 and max_fixes {max_fixes} >= 2")
    fixes: list[list[Any]] = [list(f) for f in state["fixes"]] if state else []
    i = bisect.bisect_left(fixes, at, key=lambda f: f[0])
    if i < len(fixes) and fixes[i][0] == at:
        return {"fixes": fixes}
    fixes.insert(i, [at, lat, lng])
    oldest = fixes[-1][0] - window_ms
    first = bisect.bisect_left(fixes, oldest, key=lambda f: f[0])
    return {"fixes": fixes[max(first, len(fixes) - max_fixes):]}


def speed_mps(state: dict[str, Any] | None) -> float | None:
    """Mean speed over the held fixes: path length (sum of great-circle legs) / elapsed time.

    None with fewer than 2 fixes or when they span less than ``MIN_SPEED_SPAN_MS``. GPS jitter
    adds path length, so a parked van reads a few tenths of m/s, not 0.
    """
    fixes = state["fixes"] if state else []
    if len(fixes) < 2:
        return None
    elapsed_ms = fixes[-1][0] - fixes[0][0]
    if elapsed_ms < MIN_SPEED_SPAN_MS:
        return None
    path = sum(haversine_m(a[1], a[2], b[1], b[2]) for a, b in itertools.pairwise(fixes))
    return path / (elapsed_ms / 1000)


# --- ETAs ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Stop:
    """A place the van still has to visit for ``order_id``."""

    order_id: str
    lat: float
    lng: float
    window_start: int | None = None  # the promised delivery window (epoch ms), when known
    window_end: int | None = None
    kg: float | None = None  # the order's weight on board
    dispatched_at: int | None = None  # event time of the dispatch that put it on this van


@dataclass(frozen=True, slots=True)
class VanSnapshot:
    """A van's last fix and its recent speed (``speed_mps`` of its track, None if unknown), and what else
    the driver's fold knows at ``at`` (None when unknown; the baseline ignores them, a learnt model uses them):

    * ``load_kg``: weight of the orders on board;
    * ``traffic_index`` / ``rain_mm_h``: the newest ``RoadConditions`` of the van's area released by ``at``
      (travel time / free-flow travel time; rain intensity);
    * ``driver_pace``: the driver's recent history, an exponentially weighted mean of (actual / baseline
      estimated) time of the driver's last legs to a customer;
    * ``stops_total``: orders on board (the stops passed to ``estimate`` may be fewer: visited ones drop out).
    """

    driver_id: str
    lat: float
    lng: float
    at: int
    speed_mps: float | None
    load_kg: float | None = None
    traffic_index: float | None = None
    rain_mm_h: float | None = None
    driver_pace: float | None = None
    stops_total: int | None = None


@dataclass(frozen=True, slots=True)
class Eta:
    """Estimated arrival at one stop: ``distance_m`` by road from the van, ``stops_before`` served first;
    ``late_risk`` is the probability of arriving after the stop's window end (None: not estimated)."""

    order_id: str
    eta: int
    distance_m: float
    stops_before: int
    late_risk: float | None = None  # probability of arriving after the window end (learnt models only)


class EtaEstimator(Protocol):
    """Estimates arrival times along a van's route.

    ``estimate(van, stops)`` gets the stops in visiting order and returns one ``Eta`` per stop, in
    the same order, each with ``eta >= van.at`` and non-decreasing along the route. It must be pure
    and deterministic (same inputs, same output). An estimator may expose ``road_factor`` (road /
    great-circle distance), which ``projections.redispatch`` uses to rank drivers.
    """

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]: ...


class DistanceSpeedEta:
    """Baseline estimator: road distance = great-circle × ``road_factor``, cumulative along
    van → stop 1 → stop 2 …; speed = the van's, clamped to [``min_speed_kmh``, ``max_speed_kmh``],
    or ``default_speed_kmh`` when unknown; each earlier stop adds ``service_ms``."""

    __slots__ = ("default_speed_kmh", "max_speed_kmh", "min_speed_kmh", "road_factor", "service_ms")

    def __init__(self, road_factor: float = DEFAULT_ROAD_FACTOR, min_speed_kmh: float = 8.0,
                 max_speed_kmh: float = 60.0, default_speed_kmh: float = 22.0, service_ms: int = 5 * 60_000) -> None:
        for name, value in (("road_factor", road_factor), ("min_speed_kmh", min_speed_kmh),
                            ("max_speed_kmh", max_speed_kmh), ("default_speed_kmh", default_speed_kmh)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DistanceSpeedEta: {name} must be a positive number, got {value}")
        if min_speed_kmh > max_speed_kmh:
            raise ValueError(f"DistanceSpeedEta: min_speed_kmh {min_speed_kmh} > max_speed_kmh {max_speed_kmh}")
        if not min_speed_kmh <= default_speed_kmh <= max_speed_kmh:
            raise ValueError(f"DistanceSpeedEta: default_speed_kmh {default_speed_kmh} is outside "
                             f"[{min_speed_kmh}, {max_speed_kmh}]")
        if service_ms < 0:
            raise ValueError(f"DistanceSpeedEta: service_ms must be >= 0, got {service_ms}")
        self.road_factor = road_factor
        self.min_speed_kmh = min_speed_kmh
        self.max_speed_kmh = max_speed_kmh
        self.default_speed_kmh = default_speed_kmh
        self.service_ms = service_ms

    def speed_for(self, van: VanSnapshot) -> float:
        """The speed (m/s) the estimate uses for ``van``."""
        if van.speed_mps is None or not math.isfinite(van.speed_mps):
            return self.default_speed_kmh / 3.6
        return min(max(van.speed_mps, self.min_speed_kmh / 3.6), self.max_speed_kmh / 3.6)

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        speed = self.speed_for(van)
        etas: list[Eta] = []
        lat, lng, road = van.lat, van.lng, 0.0
        for i, stop in enumerate(stops):
            road += haversine_m(lat, lng, stop.lat, stop.lng) * self.road_factor
            lat, lng = stop.lat, stop.lng
            # From the cumulative distance (not summed rounded legs), so rounding never drifts.
            etas.append(Eta(stop.order_id, van.at + round(road / speed * 1000) + i * self.service_ms, road, i))
        return etas


def visit_order(lat: float, lng: float, stops: Sequence[Stop]) -> list[Stop]:
    """Nearest-neighbour route from (``lat``, ``lng``): repeatedly the closest unvisited stop, ties
    by ``order_id`` (then position). O(n²), fine for the tens of stops a van carries."""
    left = list(stops)
    route: list[Stop] = []
    while left:
        best = min(left, key=lambda s: (haversine_m(lat, lng, s.lat, s.lng), s.order_id, s.lat, s.lng))
        left.remove(best)
        route.append(best)
        lat, lng = best.lat, best.lng
    return route


# --- notices ---------------------------------------------------------------------------------

def arriving_soon(previous_eta: int | None, eta: int, at: int, threshold_ms: int = ARRIVING_SOON_MS, *,
                  previous_at: int | None = None) -> bool:
    """True when the time left (``eta - at``) crosses to at or below ``threshold_ms`` from above it
    (or from unknown: ``previous_eta`` None).

    The time left before is ``previous_eta - previous_at``, where ``previous_at`` is when the
    previous ETA was estimated: it is required with ``previous_eta``, because judging the old ETA
    at the current ``at`` would miss the common case of an unchanged ETA that time approaches.
    """
    if eta - at > threshold_ms:
        return False
    if previous_eta is None:
        return True
    if previous_at is None:
        raise ValueError(f"arriving_soon: previous_eta {previous_eta} given without previous_at "
                         "(when it was estimated)")
    return previous_eta - previous_at > threshold_ms


def within(lat: float, lng: float, dest_lat: float, dest_lng: float, radius_m: float = ARRIVED_RADIUS_M) -> bool:
    """True when (``lat``, ``lng``) is at most ``radius_m`` (great-circle) from the destination."""
    if not radius_m >= 0:
        raise ValueError(f"within: radius_m must be >= 0, got {radius_m}")
    return haversine_m(lat, lng, dest_lat, dest_lng) <= radius_m
