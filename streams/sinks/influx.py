"""InfluxDB v1 HTTP API sink (``/write`` line protocol, precision ms).

The v1 write/query API is served by InfluxDB 1.x, 2.x (v1 compatibility) and
3.x, so this path works against every generation. A point is identified by
measurement + tags + timestamp, so re-writing a duplicate is a no-op.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from projections.timefmt import ms
from streams.sinks.errors import SinkError


def _esc_key(s: str) -> str:
    # InfluxDB 1.x reads a backslash literally unless it precedes , = or space: do not double it.
    if "\n" in s or "\r" in s:
        raise ValueError(f"line protocol cannot carry a newline in a tag or key: {s!r}")
    return s.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _esc_measurement(s: str) -> str:
    if "\n" in s or "\r" in s:
        raise ValueError(f"line protocol cannot carry a newline in a measurement: {s!r}")
    return s.replace(",", r"\,").replace(" ", r"\ ")


def _field(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, Any], ts_ms: int) -> str:
    tag_part = "".join(f",{_esc_key(k)}={_esc_key(str(v))}" for k, v in sorted(tags.items()) if v not in (None, ""))
    field_part = ",".join(f"{_esc_key(k)}={_field(v)}" for k, v in fields.items() if v is not None)
    if not field_part:
        raise ValueError(f"{measurement} point at {ts_ms} has no fields")
    return f"{_esc_measurement(measurement)}{tag_part} {field_part} {ts_ms}"


def gps_line(p: Mapping[str, Any]) -> str:
    return line("gps", {"driver_id": p["driver_id"], "vehicle_id": p["vehicle_id"]},
                {"lat": float(p["lat"]), "lng": float(p["lng"]), "speed_kmh": float(p["speed_kmh"]),
                 "heading_deg": float(p["heading_deg"]),
                 "accuracy_m": None if p.get("accuracy_m") is None else float(p["accuracy_m"])},
                ms(p["event_time"]))


def sensor_line(r: Mapping[str, Any]) -> str:
    return line("cold_chain", {"device_id": r["device_id"], "vehicle_id": r.get("vehicle_id"),
                               "warehouse_id": r.get("warehouse_id"), "compartment": str(r["compartment"])},
                {"temperature_c": float(r["temperature_c"]), "humidity_pct": float(r["humidity_pct"])},
                ms(r["event_time"]))


def alert_line(a: Mapping[str, Any]) -> str:
    """One point per alert change: ``SELECT count(occurrences) FROM alerts WHERE status='OPEN' GROUP BY
    rule_id, time(1h)`` counts alerts opened. ``alert_id`` is a tag so that two alerts changing in the
    same millisecond are two points (and a re-written change is one)."""
    return line("alerts", {"alert_id": a["alert_id"], "rule_id": a["rule_id"], "severity": str(a["severity"]),
                           "status": str(a["status"]), "warehouse_id": a.get("warehouse_id")},
                {"occurrences": int(a["occurrences"]), "order_id": a.get("order_id")}, int(a["updated_at"]))


def eta_line(e: Mapping[str, Any]) -> str:
    """One point per published ``OrderEta`` estimate (the delay-risk and ETA predictions as a time series):
    ``SELECT mean(late_risk) FROM order_eta GROUP BY warehouse_id, time(1h)``. ``order_id`` is a tag so two
    orders estimated at the same ping are two points (and a re-published record is one); the observed arrivals
    (estimator geofence/arrival) are not predictions and are left out by the caller."""
    return line("order_eta", {"order_id": e["order_id"], "driver_id": e["driver_id"], "estimator": e["estimator"]},
                {"eta_ms": int(e["eta"]), "remaining_s": round((e["eta"] - e["computed_at"]) / 1000, 1),
                 "late_risk": None if e.get("late_risk") is None else float(e["late_risk"]),
                 "distance_m": float(e["distance_m"]), "stops_before": int(e["stops_before"]),
                 "dispatch_count": int(e["dispatch_count"])}, int(e["computed_at"]))


class InfluxWriter:
    """``write(lines)`` posts a batch of points in one request (keep-alive), retrying transient failures.

    Stateless between calls, so a caller retrying a failed batch sends exactly that batch again."""

    def __init__(self, url: str, db: str, *, retries: int = 5, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB URL must be http(s)://host:port, got {url!r}")
        self._url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = f"{parts.path.rstrip('/')}/write?" + urllib.parse.urlencode({"db": db, "precision": "ms"})
        self._retries = retries
        self._timeout = timeout_s
        self._sleep = sleep
        self._conn: http.client.HTTPConnection | None = None

    def _post(self, body: bytes) -> tuple[int, str]:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        try:
            self._conn.request("POST", self._path, body=body, headers={"Content-Type": "text/plain"})
            resp = self._conn.getresponse()
            text = resp.read().decode("utf-8", "replace")[:300]
            return resp.status, text
        except Exception:
            self.close()
            raise

    def write(self, lines: list[str]) -> int:
        """Post ``lines``; how many were written. Raises SinkError once the retries are spent."""
        if not lines:
            return 0
        body = "\n".join(lines).encode()
        delay = 0.2
        for attempt in range(1, self._retries + 1):
            try:
                status, text = self._post(body)
                if status == 204:
                    return len(lines)
                if status < 500:
                    raise SinkError(f"InfluxDB refused {len(lines)} points ({status}): {text}")
                error = f"InfluxDB {status}: {text}"
            except SinkError:
                raise
            except Exception as exc:  # connection refused/reset, timeouts
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self._retries:
                self._sleep(delay)
                delay = min(delay * 2, 5.0)
        raise SinkError(f"InfluxDB write of {len(lines)} points to {self._url} failed: {error}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
