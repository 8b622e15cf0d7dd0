"""The alert agent: order events + sensor readings -> ``kuailv.alerts.v1`` (+ Redis views, InfluxDB counts).

Vehicle sensor readings it has taken (not duplicates, not late) are forwarded to ``kuailv.fleet.v1``,
where the fleet view knows the orders on each van and decides cold-chain exposure per trip.

Same pattern as the other agents (``docs/hot-path.md``): ``process`` folds the batch with
``projections.alert_step.AlertProjection`` and then fires the event-time timers the batch made
due; ``write`` produces the alert records and dead letters, flushes, posts the alert points to
InfluxDB, and saves states, the timer index, watermarks and alert views in one Redis pipeline.

Event-time timers. Each partition of ``kuailv.order-events.v1`` has a watermark: the newest
order ``updated_at`` folded in it minus ``KUAILV_ALERT_LATENESS_MS``. Every order with a pending timer
is in a Redis sorted set per partition, scored by its next due time; when a batch moves the
watermark, the orders due at or below it are loaded and ``fire_timers`` runs on them. The
watermark moves only with the data (never the wall clock), so a partition without new order
events holds its timers until one arrives (documented in docs/contracts.md).

Own consumer group ``<group>-alerts``: it reads ``kuailv.sensors.v1`` too, which the telemetry
agent consumes in the main group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from projections.alert_step import AlertProjection, fire_due, moved_watermarks, next_due
from projections.keyed_batch import fold_batch
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, FLEET, ORDER_EVENTS, SENSORS
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.runtime.timers import PartitionTimers, RedisTimers
from streams.sinks.influx import InfluxWriter, alert_line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_alerts import RedisAlerts

log = logging.getLogger(__name__)


class AlertAgent:
    name = "alerts"
    topics = (ORDER_EVENTS.name, SENSORS.name)
    group_suffix = "-alerts"

    def __init__(self, codec: AvroCodec, projection: AlertProjection, store: RedisAlerts, timers: RedisTimers,
                 influx: InfluxWriter, output: Output, stats: Any, *, consumer: str, wall_clock_ms: Callable[[], int],
                 lateness_ms: int = 60_000, cache_keys: int = 50_000) -> None:
        self.codec = codec
        self.projection = projection
        self.rules = projection.rules
        self.store = store
        self.influx = influx
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self.lateness_ms = lateness_ms
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self._states: CachedStates[dict[str, Any]] = CachedStates(store.load, cache_keys)
        self.timer_store = timers
        self.watermarks: dict[str, int] | None = None  # "topic:partition" -> ms; loaded on the first batch
        self.timers = PartitionTimers(timers.load)

    def process(self, records: list[SourceRecord]) -> Staged:
        for partitions in self._states.apply_invalidations():
            self.watermarks = None  # reload: another worker may have moved them
            self.timers.forget(partitions)
        if self.watermarks is None:
            self.watermarks = self.timer_store.watermarks()
        result = fold_batch(self.projection, records, self._states)
        alerts: list[dict[str, Any]] = []
        forwards: list[tuple[Any, ...]] = []
        changed: dict[str, tuple[dict[str, Any], tuple[str, int]]] = {}
        for key, f in result.folded.items():
            if f.changed and f.state is not None:
                changed[key] = (f.state, result.partitions[key])
                for out in f.outputs:
                    if type(out) is tuple:  # ("reading", a vehicle's sensor reading) for the fleet view
                        reading = out[1]
                        forwards.append((FLEET.name, reading["vehicle_id"].encode(),
                                         self.codec.encode("SensorReading", reading), reading["event_time"]))
                    else:
                        alerts.append(out)
                self.timers.set(key, next_due(f.state), result.partitions[key])
        moved = moved_watermarks(result, self.watermarks, self.lateness_ms)
        for where, mark in moved.items():
            topic, _, partition = where.rpartition(":")
            alerts += self._fire((topic, int(partition)), mark, changed)
        self.watermarks.update(moved)
        kafka: list[tuple[Any, ...]] = [(ALERTS.name, a["alert_id"].encode(), self.codec.encode("Alert", a),
                                         a["updated_at"]) for a in alerts] + forwards
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        saves = [(key, state, part, next_due(state)) for key, (state, part) in changed.items()]
        for key, state, part, _ in saves:
            self._states.put(key, state, part)
        counts = result.counts
        counts.alerts_written = len(alerts)
        return Staged(records, kafka, (saves, moved, alerts), counts)

    def _fire(self, partition: tuple[str, int], watermark: int,
              changed: dict[str, tuple[dict[str, Any], tuple[str, int]]]) -> list[dict[str, Any]]:
        """Fire the timers of ``partition`` due at or before ``watermark``."""
        keys = self.timers.due(partition, watermark)
        if not keys:
            return []
        known = {k: changed[k][0] for k in keys if k in changed}
        known.update(self._states([k for k in keys if k not in known]))
        records, fired = fire_due(known, watermark, self.rules)
        for key, state in fired.items():
            changed[key] = (state, partition)
            self.timers.set(key, next_due(state), partition)
        return records

    def write(self, staged: Staged) -> None:
        saves, moved, alerts = staged.payload
        for record in staged.kafka:
            self.output.add(*record)  # (topic, key, value[, event-time timestamp ms])
        self.output.flush()
        if alerts:
            self.influx.write([alert_line(a) for a in alerts])
        pipe = self.stats.pipeline()
        self.store.save([(key, state) for key, state, _, _ in saves], pipe)
        self.timer_store.save([(key, part, due) for key, _, part, due in saves], moved, pipe)
        self.store.publish(alerts, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], {}, []))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        self.influx.close()
