"""The suggested visiting order of a van's stops: OR-Tools routing with time windows. Pure.

``plan_stops`` orders 1-8 stops from the van's position, minimising planned travel time plus a
penalty per second of lateness past each stop's window end (an open route: the van does not
come back). ``TravelTimes`` is the travel-time model it plans with: great-circle distance ×
``road_factor`` at a speed by Beijing hour of day, scaled by a factor per straight-line distance
band; ``models.travel_times`` learns one from history. All times are epoch ms.

The search is deterministic and machine independent: local search (greedy descent, no time
limit, capped by a solution count) from the nearest-neighbour route (``projections.eta.visit_order``)
and, when there are windows, from the stops by window end; the cheaper result wins. Its cost
matrix uses the speed of the hour the van leaves (``at``); the planned arrivals in the result are
then walked leg by leg with the speed of the hour each leg starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from projections.eta import DEFAULT_ROAD_FACTOR, Stop, visit_order
from projections.geo import haversine_m

HOUR_MS = 3_600_000
BEIJING_UTC_OFFSET_H = 8
DEFAULT_SPEED_KMH = 22.0
LATE_WEIGHT = 4  # one second late costs as much as this many seconds of driving
LATE_MARGIN_MS = 20 * 60_000  # the solver counts lateness from this long before a window end: times vary
SOLUTION_LIMIT = 500  # a cap on accepted solutions: greedy descent stops well before it for <= 8 stops
_HORIZON_S = 7 * 24 * 3600  # cumulated route time (s) is bounded by a week

Point = tuple[float, float]  # (lat, lng)


def beijing_hour(at: int) -> int:
    """Hour of the day (0-23) in Beijing (UTC+8, no daylight saving) of an epoch-ms instant."""
    return (at // HOUR_MS + BEIJING_UTC_OFFSET_H) % 24


@dataclass(frozen=True, slots=True)
class TravelTimes:
    """Travel time between two points: ``straight × road_factor / speed``, where speed (km/h) is
    ``speed_kmh[Beijing hour of departure] × band_factors[band of the straight-line distance]``.

    ``band_edges_m`` are increasing straight-line distances; band ``i`` holds distances below
    ``band_edges_m[i]`` (and not below the previous edge), the last band everything above.
    """

    road_factor: float = DEFAULT_ROAD_FACTOR
    speed_kmh: tuple[float, ...] = (DEFAULT_SPEED_KMH,) * 24
    band_edges_m: tuple[float, ...] = ()
    band_factors: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.road_factor) and self.road_factor >= 1.0):
            raise ValueError(f"TravelTimes: road_factor must be a finite number >= 1, got {self.road_factor}")
        if len(self.speed_kmh) != 24 or not all(math.isfinite(v) and v > 0 for v in self.speed_kmh):
            raise ValueError(f"TravelTimes: speed_kmh needs 24 positive speeds (one per hour), got {self.speed_kmh}")
        edges = self.band_edges_m
        if any(not (math.isfinite(e) and e > 0) for e in edges) or any(a >= b for a, b in itertools.pairwise(edges)):
            raise ValueError(f"TravelTimes: band_edges_m must be positive and increasing, got {edges}")
        if len(self.band_factors) != len(edges) + 1 or not all(math.isfinite(f) and f > 0 for f in self.band_factors):
            raise ValueError(f"TravelTimes: {len(edges) + 1} positive band_factors needed for edges {edges}, "
                             f"got {self.band_factors}")

    def band(self, straight_m: float) -> int:
        """The distance band index of a straight-line distance."""
        return next((i for i, edge in enumerate(self.band_edges_m) if straight_m < edge), len(self.band_edges_m))

    def speed_mps(self, straight_m: float, at: int) -> float:
        """Planned speed (m/s along the road) for a leg of ``straight_m`` leaving at ``at``."""
        return self.speed_kmh[beijing_hour(at)] * self.band_factors[self.band(straight_m)] / 3.6

    def road_m(self, a: Point, b: Point) -> float:
        """Planned road distance (m) from ``a`` to ``b``."""
        return haversine_m(a[0], a[1], b[0], b[1]) * self.road_factor

    def seconds(self, a: Point, b: Point, at: int) -> float:
        """Planned driving time (s) from ``a`` to ``b`` (``(lat, lng)``) leaving at ``at`` (epoch ms)."""
        straight = haversine_m(a[0], a[1], b[0], b[1])
        return straight * self.road_factor / self.speed_mps(straight, at)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back to an equal value)."""
        return {"road_factor": self.road_factor, "speed_kmh": list(self.speed_kmh),
                "band_edges_m": list(self.band_edges_m), "band_factors": list(self.band_factors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TravelTimes:
        """The value ``to_json`` wrote; a missing key takes its default, an unknown key is an error."""
        unknown = set(data) - {"road_factor", "speed_kmh", "band_edges_m", "band_factors"}
        if unknown:
            raise ValueError(f"TravelTimes.from_json: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(float(x) for x in v) for k, v in data.items() if k != "road_factor"}
        if "road_factor" in data:
            kwargs["road_factor"] = float(data["road_factor"])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """A suggested route: ``order`` (order ids in visiting order), how it was found (``status``:
    ``"solver"``, ``"single"`` for one stop or ``"nearest-fallback"`` when the solver found nothing),
    the planned ``arrivals`` per stop (epoch ms, same order), the planned road ``distance_m``, travel
    time ``travel_s`` and total lateness past the window ends ``late_s`` (arrivals after a window end)."""

    order: tuple[str, ...]
    status: str
    arrivals: tuple[int, ...]
    distance_m: float
    travel_s: float
    late_s: float


def walk(start: Point, at: int, stops: Sequence[Stop], travel: TravelTimes, service_ms: int = 5 * 60_000,
         wait_for_window: bool = True) -> RoutePlan:
    """The plan of visiting ``stops`` in the given order: arrival at each (a van early for a window waits
    for its start when ``wait_for_window``), distance, travel and lateness; status ``"given"``."""
    pos, t = start, at
    arrivals: list[int] = []
    distance = travel_s = late_s = 0.0
    for stop in stops:
        here = (stop.lat, stop.lng)
        leg_s = travel.seconds(pos, here, t)
        distance += travel.road_m(pos, here)
        travel_s += leg_s
        t += round(leg_s * 1000)
        if wait_for_window and stop.window_start is not None:
            t = max(t, stop.window_start)
        arrivals.append(t)
        if stop.window_end is not None and t > stop.window_end:
            late_s += (t - stop.window_end) / 1000
        t += service_ms
        pos = here
    return RoutePlan(tuple(s.order_id for s in stops), "given", tuple(arrivals), distance, travel_s, late_s)


def plan_stops(start: Point, at: int, stops: Sequence[Stop], travel: TravelTimes, service_ms: int = 5 * 60_000,
               *, wait_for_window: bool = True, late_weight: int = LATE_WEIGHT,
               margin_ms: int = LATE_MARGIN_MS) -> RoutePlan:
    """The suggested visiting order of ``stops`` for a van at ``start`` (``(lat, lng)``) leaving at ``at``.

    Minimises planned travel seconds + ``late_weight`` × seconds past each window end less ``margin_ms``
    (a buffer for travel times that vary; a stop without ``window_end`` is never late). ``service_ms`` is
    spent at each stop before driving on. The result's ``late_s`` is against the window ends themselves.
    With ``wait_for_window`` a van early for a window waits for its start (a driver who must not
    deliver early); without it, it delivers on arrival. Same inputs, same plan.
    """
    if service_ms < 0 or late_weight < 0:
        raise ValueError(f"plan_stops: service_ms {service_ms} and late_weight {late_weight} must be >= 0")
    bad = [s.order_id for s in stops if not (math.isfinite(s.lat) and math.isfinite(s.lng))]
    if bad or not (math.isfinite(start[0]) and math.isfinite(start[1])):
        raise ValueError(f"plan_stops: non-finite position of the van {start} or of stops {bad}")
    ids = [s.order_id for s in stops]
    if len(set(ids)) != len(ids):
        raise ValueError(f"plan_stops: duplicate order ids in {ids}")
    if len(stops) <= 1:
        return _with_status(walk(start, at, stops, travel, service_ms, wait_for_window), "single")
    nearest = visit_order(start[0], start[1], stops)
    starts = [nearest]
    if any(s.window_end is not None for s in stops):
        starts.append(sorted(stops, key=lambda s: (s.window_end is None, s.window_end or 0, s.order_id)))
    order = _solve(start, at, stops, starts, travel, service_ms, wait_for_window, late_weight, margin_ms)
    if order is None:
        return _with_status(walk(start, at, nearest, travel, service_ms, wait_for_window), "nearest-fallback")
    return _with_status(walk(start, at, order, travel, service_ms, wait_for_window), "solver")


def _with_status(plan: RoutePlan, status: str) -> RoutePlan:
    return RoutePlan(plan.order, status, plan.arrivals, plan.distance_m, plan.travel_s, plan.late_s)


def _solve(start: Point, at: int, stops: Sequence[Stop], starts: Sequence[Sequence[Stop]], travel: TravelTimes,
           service_ms: int, wait_for_window: bool, late_weight: int, margin_ms: int) -> list[Stop] | None:
    """Node 0 is the van (start and a free end: arcs into it cost nothing), nodes 1..n the stops."""
    points = [start, *((s.lat, s.lng) for s in stops)]
    n = len(points)
    drive = [[0 if j == 0 or i == j else max(0, round(travel.seconds(points[i], points[j], at))) for j in range(n)]
             for i in range(n)]
    service_s = round(service_ms / 1000)
    busy = [[drive[i][j] + (service_s if i else 0) for j in range(n)] for i in range(n)]
    manager = pywrapcp.RoutingIndexManager(n, 1, 0)
    routing = pywrapcp.RoutingModel(manager)
    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(drive))
    routing.AddDimension(routing.RegisterTransitMatrix(busy), _HORIZON_S, _HORIZON_S, False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    for node, stop in enumerate(stops, start=1):
        cumul = time_dim.CumulVar(manager.NodeToIndex(node))
        if wait_for_window and stop.window_start is not None:
            cumul.SetMin(min(_HORIZON_S, max(0, (stop.window_start - at) // 1000)))
        if stop.window_end is not None and late_weight:
            # A window already closed at ``at`` clamps to 0: the penalty then differs by a constant only.
            bound = min(_HORIZON_S, max(0, (stop.window_end - margin_ms - at) // 1000))
            time_dim.SetCumulVarSoftUpperBound(manager.NodeToIndex(node), bound, late_weight)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT
    params.solution_limit = SOLUTION_LIMIT
    params.local_search_operators.use_tsp_opt = 3  # BOOL_TRUE: exact reordering of short paths (DP)
    routing.CloseModelWithParameters(params)
    node_of = {s.order_id: i for i, s in enumerate(stops, start=1)}
    best = None
    for initial in starts:  # greedy descent gets stuck on windows: a second start (by window end) helps
        first = routing.ReadAssignmentFromRoutes([[node_of[s.order_id] for s in initial]], True)
        solution = routing.SolveFromAssignmentWithParameters(first, params) if first is not None else None
        if solution is not None and (best is None or solution.ObjectiveValue() < best.ObjectiveValue()):
            best = solution
    if best is None:
        best = routing.SolveWithParameters(params)
    if best is None:
        return None
    route: list[Stop] = []
    index = routing.Start(0)
    while not routing.IsEnd(index):
        node = manager.IndexToNode(index)
        if node:
            route.append(stops[node - 1])
        index = best.Value(routing.NextVar(index))
    return route if len(route) == len(stops) else None
