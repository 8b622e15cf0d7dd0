"""The telemetry agent: GPS and sensor topics -> InfluxDB points + each driver's latest position.

Same pattern as the order agent (``docs/hot-path.md``): ``process`` validates the batch
(``projections.telemetry.TelemetryProjection`` through ``fold_batch``) and formats the
points; ``write`` flushes dead letters to Kafka, posts the points in one InfluxDB
request and stores the newest ping per driver in one Lua call (with the counters).
Every sink is idempotent: a point is identified by measurement + tags + time, a
position only moves forward in event time.

Own consumer group (``<group>-telemetry``) with the *range* assignor: with two workers,
cooperative-sticky balanced the partition *count* and could hand one worker all six GPS
partitions and the other all six sensor partitions (seen in ``make bench-scale``); range gives
each a share of both topics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from projections.keyed_batch import fold_batch
from projections.telemetry import TelemetryProjection, latest_by
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import GPS, SENSORS
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import parked
from streams.sinks.influx import InfluxWriter, gps_line, sensor_line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_positions import RedisDriverPositions

log = logging.getLogger(__name__)
KINDS = {GPS.name: ("GpsPing", "driver_id"), SENSORS.name: ("SensorReading", "device_id")}
LINES = {"GpsPing": gps_line, "SensorReading": sensor_line}


class TelemetryAgent:
    name = "telemetry"
    topics = (GPS.name, SENSORS.name)
    group_suffix = "-telemetry"
    assignor = "range"  # a share of each topic per worker (see the module doc)

    def __init__(self, codec: AvroCodec, influx: InfluxWriter, positions: RedisDriverPositions, output: Output,
                 stats: Any, *, consumer: str, wall_clock_ms: Callable[[], int]) -> None:
        self.codec = codec
        self.projection = TelemetryProjection(codec, KINDS)
        self.influx = influx
        self.positions = positions
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self._now = wall_clock_ms

    def process(self, records: list[SourceRecord]) -> Staged:
        result = fold_batch(self.projection, records, lambda keys: {})
        dead = list(result.dead_letters)
        lines: list[str] = []
        pings: list[dict[str, Any]] = []
        for f in result.folded.values():
            for rec, (record_type, value) in f.outputs:
                try:
                    lines.append(LINES[record_type](value))
                except ValueError as exc:  # defence in depth: validation should have caught it
                    dead.append(DeadLetter(rec, "INVALID_EVENT", str(exc), value["event_id"], record_type))
                    continue
                if record_type == "GpsPing":
                    pings.append(value)
        counts = result.counts
        counts.applied = len(lines)
        counts.dead_letters = len(dead)
        kafka = []
        if dead:
            failed_at = self._now()
            for d in dead:
                log.warning("dead letter: %s", d)
                kafka.append(d.encode(self.codec, self.consumer, failed_at))
        return Staged(records, kafka, (lines, latest_by(pings, "driver_id")), counts)

    def write(self, staged: Staged) -> None:
        lines, latest = staged.payload
        if staged.kafka:
            for topic, key, value in staged.kafka:
                self.output.add(topic, key, value)
            self.output.flush()
        staged.counts.points_written = self.influx.write(lines)
        staged.counts.positions_written = len(latest)  # sent; Redis keeps only those newer than what it has
        pipe = self.stats.pipeline()
        self.positions.save(latest, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], []))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        return None  # stateless

    def close(self) -> None:
        self.influx.close()
