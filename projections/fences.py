"""Fence definitions: the versioned fence file, validated. Pure (the file is read in ``config.geofences``).

Two kinds of fence exist:

* **configured fences** (warehouses, depots, no-go zones) from a versioned file: a circle
  (centre + radius) or a polygon (a ring of ``[lat, lng]``), each with its own hysteresis;
* **customer sites**, one per order on a van, made from the order's delivery address with the
  file's ``customer_sites`` radii (``projections.geofence`` tests them by distance).

Hysteresis is by distance *and* by count: a driver is **in** a fence when a ping is inside the
fence shape (a circle's ``radius_m``, a polygon's ring), **out** when it is farther than
``exit_margin_m`` outside it, and in between (the band) nothing changes; an ENTER or EXIT
needs ``min_points`` consecutive pings on the new side. A DWELL fires once per visit when the
driver has been in for ``dwell_min`` minutes.

File format (``config/geofences.v1.json``)::

    {"version": "2026-11-29.1",
     "defaults": {"exit_margin_m": 50, "min_points": 2, "dwell_min": 5},
     "customer_sites": {"enter_m": 150, "exit_m": 250, "min_points": 2, "dwell_min": 3},
     "fences": [
       {"id": "WH-BJ-CY-01", "kind": "WAREHOUSE", "warehouse_id": "WH-BJ-CY-01",
        "circle": {"lat": 39.9625, "lng": 116.498, "radius_m": 200}},
       {"id": "NOGO-TAM", "kind": "NO_GO", "polygon": [[39.90, 116.39], [39.91, 116.39], ...],
        "exit_margin_m": 30, "dwell_min": 1}]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("WAREHOUSE", "DEPOT", "NO_GO")
_FENCE_KEYS = {"id", "kind", "warehouse_id", "circle", "polygon", "exit_margin_m", "min_points", "dwell_min", "name"}
_TOP_KEYS = {"version", "defaults", "customer_sites", "fences", "doc"}


class FenceError(ValueError):
    """The fence file is invalid; the message names the fence and the field."""


@dataclass(frozen=True, slots=True)
class Hysteresis:
    exit_margin_m: float  # how far outside the shape a ping must be to count as out
    min_points: int  # consecutive pings on the new side to ENTER or EXIT
    dwell_ms: int  # inside this long -> one DWELL per visit


@dataclass(frozen=True, slots=True)
class Fence:
    id: str
    kind: str
    hysteresis: Hysteresis
    circle: tuple[float, float, float] | None = None  # (lat, lng, radius_m)
    polygon: tuple[tuple[float, float], ...] | None = None  # ring of (lat, lng), not closed
    warehouse_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerSites:
    enter_m: float
    exit_m: float
    min_points: int
    dwell_ms: int


@dataclass(frozen=True, slots=True)
class FenceSet:
    version: str
    fences: tuple[Fence, ...]
    customer_sites: CustomerSites

    def by_id(self) -> dict[str, Fence]:
        return {f.id: f for f in self.fences}


def _num(where: str, field: str, value: Any, *, lo: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FenceError(f"{where}: {field} must be a number, got {value!r}")
    if value < lo or (positive and value <= 0):
        raise FenceError(f"{where}: {field} must be {'> 0' if positive else f'>= {lo}'}, got {value!r}")
    return float(value)


def _int(where: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FenceError(f"{where}: {field} must be an integer >= 1, got {value!r}")
    return value


def _point(where: str, field: str, lat: Any, lng: Any) -> tuple[float, float]:
    la, ln = _num(where, f"{field}.lat", lat, lo=-90.0), _num(where, f"{field}.lng", lng, lo=-180.0)
    if la > 90.0 or ln > 180.0:
        raise FenceError(f"{where}: {field} ({lat}, {lng}) is not a coordinate")
    return la, ln


def _hysteresis(where: str, raw: Mapping[str, Any], defaults: Hysteresis) -> Hysteresis:
    margin = raw.get("exit_margin_m", defaults.exit_margin_m)
    points = raw.get("min_points", defaults.min_points)
    dwell = raw.get("dwell_min", defaults.dwell_ms / 60_000)
    return Hysteresis(_num(where, "exit_margin_m", margin), _int(where, "min_points", points),
                      round(_num(where, "dwell_min", dwell, positive=True) * 60_000))


def _fence(i: int, raw: Any, defaults: Hysteresis) -> Fence:
    if not isinstance(raw, Mapping):
        raise FenceError(f"fences[{i}] must be an object, got {raw!r}")
    fid = raw.get("id")
    if not isinstance(fid, str) or not fid or "/" in fid:
        raise FenceError(f"fences[{i}]: id must be a non-empty string without '/', got {fid!r}")
    where = f"fence {fid!r}"
    unknown = set(raw) - _FENCE_KEYS
    if unknown:
        raise FenceError(f"{where}: unknown field(s) {sorted(unknown)}")
    if raw.get("kind") not in KINDS:
        raise FenceError(f"{where}: kind must be one of {list(KINDS)}, got {raw.get('kind')!r}")
    if ("circle" in raw) == ("polygon" in raw):
        raise FenceError(f"{where}: give exactly one of circle or polygon")
    circle = polygon = None
    if "circle" in raw:
        c = raw["circle"]
        if not isinstance(c, Mapping):
            raise FenceError(f"{where}: circle must be an object with lat, lng, radius_m")
        circle = (*_point(where, "circle", c.get("lat"), c.get("lng")),
                  _num(where, "circle.radius_m", c.get("radius_m"), positive=True))
    else:
        ring = raw["polygon"]
        if not isinstance(ring, list) or len(ring) < 3:
            raise FenceError(f"{where}: polygon must be a list of at least 3 [lat, lng] points")
        points = []
        for n, p in enumerate(ring):
            if not isinstance(p, list) or len(p) != 2:
                raise FenceError(f"{where}: polygon[{n}] must be [lat, lng], got {p!r}")
            points.append(_point(where, f"polygon[{n}]", p[0], p[1]))
        if points[0] == points[-1]:
            points.pop()
        if len(set(points)) < 3:
            raise FenceError(f"{where}: polygon needs at least 3 distinct points")
        polygon = tuple(points)
    warehouse_id = raw.get("warehouse_id")
    if raw["kind"] == "WAREHOUSE" and not isinstance(warehouse_id, str):
        raise FenceError(f"{where}: a WAREHOUSE fence needs warehouse_id")
    return Fence(fid, raw["kind"], _hysteresis(where, raw, defaults), circle, polygon, warehouse_id, raw.get("name"))


def load_fences(raw: Mapping[str, Any]) -> FenceSet:
    """Validate a parsed fence file; ``FenceError`` names the fence and field at fault."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise FenceError(f"fence file: unknown field(s) {sorted(unknown)}")
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise FenceError(f"fence file: version must be a non-empty string, got {version!r}")
    d = raw.get("defaults", {})
    defaults = _hysteresis("defaults", d, Hysteresis(50.0, 2, 5 * 60_000))
    c = raw.get("customer_sites", {})
    sites = CustomerSites(_num("customer_sites", "enter_m", c.get("enter_m", 150.0), positive=True),
                          _num("customer_sites", "exit_m", c.get("exit_m", 250.0), positive=True),
                          _int("customer_sites", "min_points", c.get("min_points", 2)),
                          round(_num("customer_sites", "dwell_min", c.get("dwell_min", 3), positive=True) * 60_000))
    if sites.exit_m < sites.enter_m:
        raise FenceError("customer_sites: exit_m must be >= enter_m (hysteresis)")
    fences = tuple(_fence(i, f, defaults) for i, f in enumerate(raw.get("fences", [])))
    seen: set[str] = set()
    for f in fences:
        if f.id in seen:
            raise FenceError(f"fence {f.id!r}: duplicate id")
        seen.add(f.id)
    return FenceSet(version, fences, sites)
