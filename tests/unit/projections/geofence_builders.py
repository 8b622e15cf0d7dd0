"""Builders for geofence tests: a small fence set, pings at metre offsets, van orders."""

from __future__ import annotations

from typing import Any

from projections.fence_index import FenceIndex
from projections.fences import load_fences
from projections.geo import EARTH_RADIUS_M
from projections.geofence import GeoContext

T0 = 1_780_000_000_000
S = 1000
MIN = 60_000
WH = (39.9625, 116.4980)  # warehouse centre, radius 200 m, exit margin 50 m
CUSTOMER = (39.9300, 116.4500)

FENCE_FILE: dict[str, Any] = {
    "version": "test.1",
    "defaults": {"exit_margin_m": 50, "min_points": 2, "dwell_min": 5},
    "customer_sites": {"enter_m": 150, "exit_m": 250, "min_points": 2, "dwell_min": 3},
    "fences": [
        {"id": "WH-1", "kind": "WAREHOUSE", "warehouse_id": "WH-1",
         "circle": {"lat": WH[0], "lng": WH[1], "radius_m": 200}},
        {"id": "NOGO-1", "kind": "NO_GO", "min_points": 1, "exit_margin_m": 20, "dwell_min": 1,
         "polygon": [[39.9000, 116.4000], [39.9000, 116.4100], [39.9100, 116.4100], [39.9100, 116.4000]]},
    ],
}
FENCES = load_fences(FENCE_FILE)
INDEX = FenceIndex(FENCES)
CTX = GeoContext(FENCES, allowed_lateness_ms=30 * S)


def east_of(point: tuple[float, float], metres: float) -> tuple[float, float]:
    import math

    return point[0], point[1] + math.degrees(metres / (EARTH_RADIUS_M * math.cos(math.radians(point[0]))))


def ping(n: int, lat: float, lng: float, *, at: int | None = None, driver: str = "DRV-1",
         eid: str | None = None) -> dict[str, Any]:
    return {"event_id": eid or f"p{n}", "driver_id": driver, "vehicle_id": "VAN-1", "event_time": at or T0 + n * 10 * S,
            "producer": "test", "lat": lat, "lng": lng, "speed_kmh": 20.0, "heading_deg": 90.0, "accuracy_m": 5.0}


def van_order(state: str = "ON_BOARD", *, version: int = 7, at: int = T0, order_id: str = "KL-1",
              dest: tuple[float, float] = CUSTOMER, dispatch: int = 1) -> dict[str, Any]:
    return {"driver_id": "DRV-1", "vehicle_id": "VAN-1", "order_id": order_id, "order_version": version,
            "customer_id": "C-1", "warehouse_id": "WH-1", "state": state,
            "destination": {"lat": dest[0], "lng": dest[1]}, "window_start": T0, "window_end": T0 + 60 * MIN,
            "dispatch_count": dispatch, "weight_kg": 40.0, "event_time": at}


def inputs(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], Any]]:
    """(type, value, hits) as the projection hands them to ``geofence.step``."""
    pings = [r for r in records if "lat" in r]
    hits = iter(INDEX.classify([p["lat"] for p in pings], [p["lng"] for p in pings]))
    return [("GpsPing", r, next(hits)) if "lat" in r else ("VanOrder", r, None) for r in records]
