"""GPS pings and sensor readings: validate, write to InfluxDB in one batch,
keep each driver's newest position in Redis. Engine-agnostic like OrderProjector."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from projections.order_events import InvalidEvent
from projections.telemetry import latest_by, validate_gps, validate_sensor
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter
from schemas.errors import CodecError
from schemas.topics import GPS, SENSORS
from streams.batch_stats import BatchStats
from streams.order_projector import Output
from streams.sinks.influx import gps_line, sensor_line
from streams.source import SourceRecord

log = logging.getLogger(__name__)

_KINDS: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], None], Callable[[Mapping[str, Any]], str]]] = {
    GPS.name: ("GpsPing", "driver_id", validate_gps, gps_line),
    SENSORS.name: ("SensorReading", "device_id", validate_sensor, sensor_line),
}


class PointSink(Protocol):
    def add(self, line_protocol: str) -> None: ...

    async def flush(self) -> int: ...


class PositionStore(Protocol):
    async def save(self, pings: Sequence[Mapping[str, Any]]) -> int: ...


class TelemetryProjector:
    def __init__(self, codec: AvroCodec, influx: PointSink, positions: PositionStore, output: Output, *,
                 consumer: str, wall_clock_ms: Callable[[], int]) -> None:
        self.codec = codec
        self.influx = influx
        self.positions = positions
        self.output = output
        self.consumer = consumer
        self._now = wall_clock_ms
        self.totals = BatchStats()

    def _check(self, rec: SourceRecord) -> Mapping[str, Any] | DeadLetter:
        expected, key_field, validate, _ = _KINDS[rec.topic]
        try:
            decoded = self.codec.decode(rec.value)
        except CodecError as exc:
            return DeadLetter(rec, exc.reason_code, str(exc), schema_id=exc.schema_id)
        value = decoded.value
        if decoded.record_type != expected:
            return DeadLetter(rec, "UNEXPECTED_RECORD_TYPE", f"{decoded.record_type} does not belong on {rec.topic}",
                              value.get("event_id"), decoded.record_type, decoded.schema_id)
        key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        try:
            if key != value[key_field]:
                raise InvalidEvent(f"message key {key!r} is not the {key_field} {value[key_field]!r}")
            validate(value)
        except InvalidEvent as exc:
            return DeadLetter(rec, "INVALID_EVENT", str(exc), value["event_id"], decoded.record_type,
                              decoded.schema_id)
        return value

    async def process(self, batch: Sequence[SourceRecord]) -> BatchStats:
        stats = BatchStats(records=len(batch))
        dead: list[DeadLetter] = []
        pings: list[Mapping[str, Any]] = []
        for rec in batch:
            outcome = self._check(rec)
            if isinstance(outcome, DeadLetter):
                dead.append(outcome)
                continue
            try:
                point = _KINDS[rec.topic][3](outcome)
            except ValueError as exc:  # defence in depth: validation should have caught it
                dead.append(DeadLetter(rec, "INVALID_EVENT", str(exc), outcome["event_id"], _KINDS[rec.topic][0]))
                continue
            self.influx.add(point)
            stats.applied += 1
            if rec.topic == GPS.name:
                pings.append(outcome)
        if dead:
            failed_at = self._now()
            for d in dead:
                log.warning("dead letter: %s", d)
                self.output.add(*d.encode(self.codec, self.consumer, failed_at))
            await asyncio.to_thread(self.output.flush)
        stats.points_written = await self.influx.flush()
        stats.positions_written = await self.positions.save(latest_by(pings, "driver_id"))
        stats.dead_letters = len(dead)
        self.totals.add(stats)
        return stats
