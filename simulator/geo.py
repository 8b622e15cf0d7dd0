"""Small spherical-geometry helpers for the simulated city (WGS-84 degrees, metres)."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8

# Inside Beijing's 5th ring road, roughly: every simulated coordinate stays in this box.
LAT_MIN, LAT_MAX = 39.75, 40.05
LNG_MIN, LNG_MAX = 116.20, 116.60

Point = tuple[float, float]  # (lat, lng)


def haversine_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres."""
    lat1, lng1, lat2, lng2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: Point, b: Point) -> float:
    """Initial course from ``a`` to ``b``, degrees clockwise from north, 0..360."""
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlng = math.radians(b[1] - a[1])
    y = math.sin(dlng) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlng)
    return math.degrees(math.atan2(y, x)) % 360.0


def offset_m(p: Point, north_m: float, east_m: float) -> Point:
    """``p`` moved by a small local offset (flat-earth approximation, fine below ~50 km)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlng = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(p[0]))))
    return (p[0] + dlat, p[1] + dlng)


def lerp(a: Point, b: Point, f: float) -> Point:
    """The point a fraction ``f`` of the way from ``a`` to ``b`` (short segments)."""
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


def clamp_to_city(p: Point, margin: float = 0.002) -> Point:
    """``p`` pulled inside the city box (with a small margin, degrees)."""
    return (min(max(p[0], LAT_MIN + margin), LAT_MAX - margin),
            min(max(p[1], LNG_MIN + margin), LNG_MAX - margin))


def in_city(p: Point) -> bool:
    return LAT_MIN <= p[0] <= LAT_MAX and LNG_MIN <= p[1] <= LNG_MAX
