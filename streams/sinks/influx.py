"""InfluxDB v1 HTTP API sink (``/write`` line protocol, precision ms).

The v1 write/query API is served by InfluxDB 1.x, 2.x (v1 compatibility) and
3.x, so this path works against every generation. A point is identified by
measurement + tags + timestamp, so re-writing a duplicate is a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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


class InfluxWriter:
    """Buffers lines; ``flush`` posts them in one request, retrying transient failures."""

    def __init__(self, url: str, db: str, session: Any, retries: int = 5) -> None:
        self._url = url.rstrip("/")
        self._db = db
        self._session = session  # aiohttp.ClientSession
        self._lines: list[str] = []
        self._retries = retries

    def add(self, line_protocol: str) -> None:
        self._lines.append(line_protocol)

    def __len__(self) -> int:
        return len(self._lines)

    async def flush(self) -> int:
        if not self._lines:
            return 0
        body = "\n".join(self._lines).encode()
        delay = 0.2
        for attempt in range(1, self._retries + 1):
            try:
                async with self._session.post(f"{self._url}/write", params={"db": self._db, "precision": "ms"},
                                              data=body) as resp:
                    if resp.status == 204:
                        n = len(self._lines)
                        self._lines.clear()
                        return n
                    text = (await resp.text())[:300]
                    if resp.status < 500:
                        raise SinkError(f"InfluxDB refused {len(self._lines)} points ({resp.status}): {text}")
                    error = f"InfluxDB {resp.status}: {text}"
            except SinkError:
                raise
            except Exception as exc:  # connection refused/reset, timeouts
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self._retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise SinkError(f"InfluxDB write of {len(self._lines)} points to {self._url} failed: {error}")
