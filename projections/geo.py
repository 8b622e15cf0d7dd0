"""Distances and a local metric frame for the city (WGS-84 degrees in, metres out). Pure.

``haversine_m`` is the great-circle distance. ``LocalFrame`` maps degrees to metres east/north
of an origin with an equirectangular projection: over a city (±50 km) it is within 0.5 % of
the great-circle distance, which is what fence tests at tens to hundreds of metres need, and
it lets polygons and circles be tested in planar metres (``projections.fence_index``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
_RAD = math.pi / 180.0


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two (lat, lng) points in degrees."""
    p1, p2 = lat1 * _RAD, lat2 * _RAD
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lng2 - lng1) * _RAD / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Metres east (x) and north (y) of (``lat0``, ``lng0``)."""

    lat0: float
    lng0: float

    @property
    def _kx(self) -> float:
        return EARTH_RADIUS_M * _RAD * math.cos(self.lat0 * _RAD)

    def to_xy(self, lat: float, lng: float) -> tuple[float, float]:
        return ((lng - self.lng0) * self._kx, (lat - self.lat0) * EARTH_RADIUS_M * _RAD)

    def scales(self) -> tuple[float, float]:
        """(metres per degree of longitude, metres per degree of latitude): x = (lng - lng0) * kx."""
        return (self._kx, EARTH_RADIUS_M * _RAD)


# The simulated city's centre (Tiananmen); the frame every fence set uses unless its file names another.
BEIJING = LocalFrame(39.9042, 116.4074)
