"""An order's GPS track: its driver's points in InfluxDB (measurement ``gps``, tag ``driver_id``) from the
order's dispatch to its delivery (or now, while it is out), at most ``limit`` points.

The window and the thinning are pure (``window``, ``thin``); ``gps_points`` asks InfluxDB through its v1
HTTP ``/query`` (InfluxQL), the API the workers write through (``streams.sinks.influx``), so every InfluxDB
generation answers. A track longer than ``limit`` is thinned evenly (every k-th point, first and last
kept) from the raw points; beyond ``RAW_MAX`` points (a van stuck out for days) InfluxDB thins it
itself (``GROUP BY time`` buckets, the first point of each: its time is the bucket's start).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from config.settings import Settings
from projections.order_view import ACTIVE_DELIVERY
from projections.timefmt import iso

MAX_POINTS = 5000
RAW_MAX = 50_000  # raw points fetched to thin here; above it InfluxDB buckets them
END_STAGES = ("delivered", "refused", "claim_opened")  # the delivery leg is over
FIELDS = ("lat", "lng", "speed_kmh", "heading_deg")


class TrackUnavailable(Exception):
    """InfluxDB did not answer the track query (the message names the server and the query)."""


def _ms(iso_time: str) -> int:
    return int(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


def window(order: Mapping[str, Any], now_ms: int) -> tuple[int, int] | None:
    """[dispatch, end] of the order's current delivery attempt in epoch ms: the end is the delivery (or
    refusal, or a claim from an exception) after the dispatch; ``now_ms`` while it is out; None before its
    first dispatch. ``stages`` holds the latest time of each stage, so a re-dispatch starts a new window."""
    stages = order.get("stages") or {}
    if not stages.get("dispatched") or not order.get("driverInfo"):
        return None
    start = _ms(stages["dispatched"])
    if order.get("status") in ACTIVE_DELIVERY:
        return start, max(start, now_ms)
    ends = [t for t in (_ms(stages[s]) for s in END_STAGES if stages.get(s)) if t >= start]
    end = min(ends) if ends else _ms(order.get("updatedAt") or stages["dispatched"])
    return start, max(start, end)


def thin(points: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` points evenly spaced by index, the first and the last always kept."""
    n = len(points)
    if n <= limit:
        return list(points)
    if limit == 1:
        return [points[-1]]
    return [points[round(i * (n - 1) / (limit - 1))] for i in range(limit)]


def influx_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _where(driver_id: str, start_ms: int, end_ms: int) -> str:
    return f"driver_id = {influx_literal(driver_id)} AND time >= {start_ms}ms AND time <= {end_ms}ms"


def influx_query(settings: Settings, q: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement (times in epoch ms)."""
    params = urllib.parse.urlencode({"db": settings.influx_db, "q": q, "epoch": "ms"})
    url = f"{settings.influx_url.rstrip('/')}/query?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP error, not JSON
        raise TrackUnavailable(f"InfluxDB {settings.influx_url} db {settings.influx_db}: {q}: {exc}") from exc
    result = (body.get("results") or [{}])[0]
    if "error" in result or "error" in body:
        raise TrackUnavailable(f"InfluxDB {settings.influx_url} db {settings.influx_db}: {q}: "
                               f"{result.get('error') or body.get('error')}")
    return result.get("series") or []


def influx_rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in series:
        cols = s["columns"]
        rows += [dict(zip(cols, v, strict=True)) for v in s.get("values") or []]
    return sorted(rows, key=lambda r: r["time"])


def gps_points(settings: Settings, driver_id: str, start_ms: int, end_ms: int, limit: int
               ) -> tuple[list[dict[str, Any]], int]:
    """The driver's points in [start, end], thinned to ``limit``, and how many there are."""
    where = _where(driver_id, start_ms, end_ms)
    counted = influx_rows(influx_query(settings, f"SELECT count(lat) FROM gps WHERE {where}"))
    total = int(counted[0]["count"]) if counted else 0
    if total == 0:
        return [], 0
    cols = ", ".join(FIELDS)
    if total <= RAW_MAX:
        rows = influx_rows(influx_query(settings, f"SELECT {cols} FROM gps WHERE {where}"))
        return thin(rows, limit), total
    bucket = max(1, math.ceil((end_ms - start_ms + 1) / limit))
    firsts = ", ".join(f"first({f}) AS {f}" for f in FIELDS)
    grouped = f"SELECT {firsts} FROM gps WHERE {where} GROUP BY time({bucket}ms) fill(none)"
    rows = influx_rows(influx_query(settings, grouped))
    return rows[:limit], total


def track(order: Mapping[str, Any], now_ms: int, points: Any, limit: int) -> dict[str, Any]:
    """The track document of ``order``; ``points(driver_id, start_ms, end_ms, limit)`` reads the points."""
    span = window(order, now_ms)
    driver = (order.get("driverInfo") or {}).get("driverId")
    if span is None or not driver:
        return {"orderId": order["orderId"], "driverId": driver, "from": None, "to": None, "total": 0,
                "thinned": False, "points": []}
    rows, total = points(driver, span[0], span[1], limit)
    return {"orderId": order["orderId"], "driverId": driver, "from": iso(span[0]), "to": iso(span[1]),
            "total": total, "thinned": total > len(rows),
            "points": [{"at": iso(int(r["time"])), "lat": r["lat"], "lng": r["lng"], "speedKmh": r.get("speed_kmh"),
                        "headingDeg": r.get("heading_deg")} for r in rows]}
