"""Pure checks and reductions for GPS pings and cold-chain sensor readings."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projections.keyed_batch import Folded, Keyed, decode_checked
from projections.order_events import InvalidEvent
from projections.timefmt import ms
from schemas.dead_letters import DeadLetter, SourceRecord

Reading = tuple[str, dict[str, Any]]  # (record type, decoded value)

MAX_SPEED_KMH = 200.0
# Ids become InfluxDB tags and Redis keys: letters, digits and . _ - : @ / only, 1..128 chars.
_ID = re.compile(r"[\w.\-:@/]{1,128}")


def check_ids(r: Mapping[str, Any], *names: str) -> None:
    for name in names:
        value = r.get(name)
        if value is not None and not _ID.fullmatch(value):
            raise InvalidEvent(f"{name} {value!r} must be 1..128 letters, digits or . _ - : @ /")


def _finite(record: Mapping[str, Any], *names: str) -> None:
    for name in names:
        value = record.get(name)
        if value is not None and not math.isfinite(value):
            raise InvalidEvent(f"{name} is {value}")


def validate_gps(p: Mapping[str, Any]) -> None:
    check_ids(p, "driver_id", "vehicle_id")
    _finite(p, "lat", "lng", "speed_kmh", "heading_deg", "accuracy_m")
    if not (-90.0 <= p["lat"] <= 90.0 and -180.0 <= p["lng"] <= 180.0):
        raise InvalidEvent(f"driver {p['driver_id']}: ({p['lat']}, {p['lng']}) is not a coordinate")
    if p["lat"] == 0.0 and p["lng"] == 0.0:
        raise InvalidEvent(f"driver {p['driver_id']}: (0, 0) is a missing fix, not a position")
    if not 0.0 <= p["speed_kmh"] <= MAX_SPEED_KMH:
        raise InvalidEvent(f"driver {p['driver_id']}: speed {p['speed_kmh']} km/h is impossible for a van")
    if not 0.0 <= p["heading_deg"] <= 360.0:
        raise InvalidEvent(f"driver {p['driver_id']}: heading {p['heading_deg']} is outside 0..360")
    if p.get("accuracy_m") is not None and p["accuracy_m"] < 0:
        raise InvalidEvent(f"driver {p['driver_id']}: negative accuracy")


def validate_sensor(r: Mapping[str, Any]) -> None:
    check_ids(r, "device_id", "vehicle_id", "warehouse_id")
    _finite(r, "temperature_c", "humidity_pct")
    if not -60.0 <= r["temperature_c"] <= 80.0:
        raise InvalidEvent(f"device {r['device_id']}: {r['temperature_c']} °C is outside the sensor's range")
    if not 0.0 <= r["humidity_pct"] <= 100.0:
        raise InvalidEvent(f"device {r['device_id']}: humidity {r['humidity_pct']} % is outside 0..100")
    if r.get("vehicle_id") is None and r.get("warehouse_id") is None:
        raise InvalidEvent(f"device {r['device_id']}: reading names neither a vehicle nor a warehouse")


def latest_by(records: Iterable[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """The newest record (by event time, then event id) per ``key`` value."""
    best: dict[str, tuple[int, str, Mapping[str, Any]]] = {}
    for r in records:
        k = r[key]
        rank = (ms(r["event_time"]), r["event_id"])
        cur = best.get(k)
        if cur is None or rank > cur[:2]:
            best[k] = (*rank, r)
    return [best[k][2] for k in sorted(best)]


class TelemetryProjection:
    """GPS pings and sensor readings as a ``projections.keyed_batch.KeyedProjection``: keyed by
    driver or device, stateless; a valid reading is emitted as an output ``(record, (type,
    value))``, anything else is a dead letter. The sinks (``streams.telemetry_agent``) turn
    outputs into InfluxDB points and each driver's latest position."""

    name = "telemetry"

    def __init__(self, codec: Any, kinds: Mapping[str, tuple[str, str]]) -> None:
        self.codec = codec  # schemas.codec.AvroCodec
        self.kinds = kinds  # topic -> (record type, key field), e.g. {"kuailv.gps.v1": ("GpsPing", "driver_id")}
        self._validate = {"GpsPing": validate_gps, "SensorReading": validate_sensor}

    def decode(self, rec: SourceRecord) -> Keyed[Reading] | DeadLetter:
        expected, key_field = self.kinds[rec.topic]
        decoded = decode_checked(self.codec, rec, expected, key_field, self._validate[expected])
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(decoded.value[key_field], (decoded.record_type, decoded.value))

    def fold(self, key: str, state: None, items: Sequence[tuple[SourceRecord, Reading]]) -> Folded[None]:
        return Folded(None, outputs=list(items), applied=len(items))
