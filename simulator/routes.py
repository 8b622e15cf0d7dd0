"""Plausible van routes through the city and the GPS fixes a driver app reports on them.

A route is piecewise linear through a few waypoints (Beijing's roads are mostly
a north-south / east-west grid, so it goes via a jittered corner), each
segment driven at a constant free-flow urban speed of 15-45 km/h (``Route.slowed`` applies the
traffic and rain in force). ``Route.at(t)`` gives
the true position; ``GpsNoise`` adds a slowly drifting fix error so that
consecutive fixes stay consistent with the van's speed.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from simulator.geo import Point, bearing_deg, clamp_to_city, haversine_m, lerp, offset_m

MIN_KMH, MAX_KMH = 15.0, 45.0
ETA_KMH = 27.0  # dispatcher's planning speed
DETOUR = 1.35  # road distance / great-circle distance, for estimates


@dataclass(frozen=True, slots=True)
class Route:
    points: tuple[Point, ...]  # waypoints, first = start, last = destination
    lengths_m: tuple[float, ...]  # per segment
    speeds_ms: tuple[float, ...]  # per segment, metres per second
    starts_s: tuple[float, ...]  # time each segment begins, seconds from departure
    duration_s: float

    @property
    def length_m(self) -> float:
        return sum(self.lengths_m)

    def at(self, t_s: float) -> tuple[Point, float, float]:
        """(position, speed km/h, heading deg) ``t_s`` seconds after departure."""
        if not self.lengths_m:
            return self.points[-1], 0.0, 0.0
        t = min(max(t_s, 0.0), self.duration_s)
        i = max(0, bisect.bisect_right(self.starts_s, t) - 1)
        a, b = self.points[i], self.points[i + 1]
        seg_t = self.lengths_m[i] / self.speeds_ms[i]
        f = min(1.0, (t - self.starts_s[i]) / seg_t) if seg_t > 0 else 1.0
        return lerp(a, b, f), self.speeds_ms[i] * 3.6, bearing_deg(a, b)

    def slowed(self, factor: float) -> Route:
        """The same path driven ``factor`` times slower (traffic, rain: ``simulator.conditions.slowdown``)."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"Route.slowed: factor must be a positive number, got {factor}")
        if factor == 1.0 or not self.lengths_m:
            return self
        return Route(self.points, self.lengths_m, tuple(v / factor for v in self.speeds_ms),
                     tuple(s * factor for s in self.starts_s), self.duration_s * factor)


def _segment_speed(rng: random.Random, length_m: float) -> float:
    """km/h: short hops through side streets are slow, long runs on ring roads faster."""
    if length_m < 800:
        return rng.uniform(MIN_KMH, 30.0)
    if length_m < 3000:
        return rng.uniform(22.0, 38.0)
    return rng.uniform(28.0, MAX_KMH)


def plan_route(rng: random.Random, a: Point, b: Point) -> Route:
    """A route from ``a`` to ``b`` via a jittered grid corner and a wiggle or two."""
    if haversine_m(a, b) < 5.0:
        return Route((a, b), (), (), (0.0,), 0.0)
    corner = (a[0], b[1]) if rng.random() < 0.5 else (b[0], a[1])
    corner = clamp_to_city(offset_m(corner, rng.gauss(0, 120), rng.gauss(0, 120)))
    points: list[Point] = [a]
    for start, end in ((a, corner), (corner, b)):
        if haversine_m(start, end) > 1500:  # a bend in the road half-way along a long leg
            mid = lerp(start, end, rng.uniform(0.35, 0.65))
            points.append(clamp_to_city(offset_m(mid, rng.gauss(0, 150), rng.gauss(0, 150))))
        points.append(end)
    points = [p for i, p in enumerate(points) if i == 0 or haversine_m(points[i - 1], p) > 1.0]
    if points[-1] != b:
        points[-1] = b
    lengths, speeds, starts = [], [], [0.0]
    for p, q in itertools.pairwise(points):
        length = haversine_m(p, q)
        lengths.append(length)
        speeds.append(_segment_speed(rng, length) / 3.6)
        starts.append(starts[-1] + length / speeds[-1])
    return Route(tuple(points), tuple(lengths), tuple(speeds), tuple(starts[:-1]), starts[-1])


def estimate_s(a: Point, b: Point) -> float:
    """The dispatcher's travel-time estimate, seconds."""
    return haversine_m(a, b) * DETOUR / (ETA_KMH / 3.6)


class GpsNoise:
    """A phone's fix error: a drift of a few metres (AR(1) per 5 s), bounded by MAX_ERROR_M.

    The error decays and is re-drawn in proportion to the time since the last
    fix, so two fixes a moment apart do not jump apart.
    """

    MAX_ERROR_M = 10.0

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.north = 0.0
        self.east = 0.0
        self.last_at: int | None = None

    def fix(self, true: Point, speed_kmh: float, heading: float, at: int) -> tuple[Point, float, float, float]:
        """(reported position, speed, heading, accuracy_m) for the true state at ``at`` (epoch ms)."""
        rng = self.rng
        k = 1.0 if self.last_at is None else min(1.0, (at - self.last_at) / 5000)
        self.last_at = at
        decay, sd = 0.85**k, 1.5 * math.sqrt(k)
        self.north = decay * self.north + rng.gauss(0, sd)
        self.east = decay * self.east + rng.gauss(0, sd)
        err = math.hypot(self.north, self.east)
        if err > self.MAX_ERROR_M:
            self.north *= self.MAX_ERROR_M / err
            self.east *= self.MAX_ERROR_M / err
            err = self.MAX_ERROR_M
        pos = clamp_to_city(offset_m(true, self.north, self.east), margin=0.0)
        if speed_kmh > 0:
            speed_kmh = max(0.0, speed_kmh * (1 + rng.gauss(0, 0.04)))
            heading = (heading + rng.gauss(0, 1.5)) % 360.0
        accuracy = 3.0 + err + rng.uniform(0, 2.0)
        return (round(pos[0], 6), round(pos[1], 6)), round(speed_kmh, 1), round(heading, 1) % 360.0, round(accuracy, 1)
