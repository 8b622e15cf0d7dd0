"""The features of the delay-risk and ETA models: one row per stop of a van, from what is known at ``van.at``. Pure.

``feature_rows(van, stops)`` is the only place features are computed: training (``models.history``, from the
``(van, stops)`` the fold asked its estimator about) and inference (``models.learnt_eta.LearntEta``) both call
it, so there is no train/serve skew. Unknown values (a van without a speed yet, a fold without road
conditions) are NaN; the gradient-boosting models handle them natively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from projections.eta import DEFAULT_ROAD_FACTOR, DistanceSpeedEta, Stop, VanSnapshot
from projections.geo import haversine_m

BASELINE = DistanceSpeedEta()  # the naive ETA: road distance / the van's recent speed (also a feature)
DAY_MS = 86_400_000
BEIJING_MS = 8 * 3_600_000
NAN = math.nan

FEATURES: tuple[str, ...] = (
    "road_m",  # cumulative road distance van -> stop 1 -> ... -> this stop (great circle x road factor)
    "straight_m",  # great-circle distance van -> this stop
    "leg_m",  # road distance of the last leg (previous stop or van -> this stop)
    "stops_before",  # stops served before this one
    "stops_total",  # orders on board
    "baseline_s",  # the baseline estimator's seconds to this stop
    "speed_kmh",  # the van's mean speed over the last minutes (NaN: unknown)
    "hour",  # hour of the Beijing day of van.at (fractional)
    "weekday",  # Monday = 0 .. Sunday = 6, Beijing
    "load_kg",  # weight on board
    "stop_kg",  # this order's weight
    "traffic_index",  # newest RoadConditions around the van (1.0 = free flow)
    "rain_mm_h",
    "driver_pace",  # EWMA of actual / baseline time of the driver's recent legs
    "window_end_s",  # seconds from van.at to this stop's window end (negative: already past)
    "window_start_s",  # seconds from van.at to this stop's window start
    "since_dispatch_s",  # seconds since this order was dispatched to the van
)


def _num(value: float | int | None) -> float:
    return NAN if value is None else float(value)


def beijing_hour(at: int) -> float:
    return ((at + BEIJING_MS) % DAY_MS) / 3_600_000


def beijing_weekday(at: int) -> int:
    return ((at + BEIJING_MS) // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


def feature_rows(van: VanSnapshot, stops: Sequence[Stop], road_factor: float = DEFAULT_ROAD_FACTOR
                 ) -> list[list[float]]:
    """One row of ``FEATURES`` per stop, in route order."""
    at = van.at
    speed = NAN if van.speed_mps is None or not math.isfinite(van.speed_mps) else van.speed_mps * 3.6
    base_speed = BASELINE.speed_for(van)
    hour, weekday = beijing_hour(at), float(beijing_weekday(at))
    total = float(van.stops_total if van.stops_total is not None else len(stops))
    load, traffic, rain, pace = _num(van.load_kg), _num(van.traffic_index), _num(van.rain_mm_h), _num(van.driver_pace)
    rows: list[list[float]] = []
    lat, lng, road = van.lat, van.lng, 0.0
    for i, s in enumerate(stops):
        leg = haversine_m(lat, lng, s.lat, s.lng) * road_factor
        road += leg
        lat, lng = s.lat, s.lng
        baseline_s = road / base_speed + i * BASELINE.service_ms / 1000
        rows.append([
            road, haversine_m(van.lat, van.lng, s.lat, s.lng), leg, float(i), total, baseline_s, speed, hour,
            weekday, load, _num(s.kg), traffic, rain, pace,
            NAN if s.window_end is None else (s.window_end - at) / 1000,
            NAN if s.window_start is None else (s.window_start - at) / 1000,
            NAN if s.dispatched_at is None else (at - s.dispatched_at) / 1000,
        ])
    return rows
