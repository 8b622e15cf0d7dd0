"""The geofence agent: GPS + van orders -> ``kuailv.geofence-transitions.v1`` (+ state in Redis).

It also publishes the tracking record of every order on each van, its ETA and the stage times
derived from the van's geofences (``kuailv.order-etas.v1``, Redis ``eta:{order}``), and the
customer notices on ``kuailv.alerts.v1``: "arriving in about 10 minutes" (the ETA crossing the
threshold) and "driver nearby" (the van entering the customer site, resolved when it leaves).

The hot-path pattern (``docs/hot-path.md``): ``process`` runs ``fold_batch`` with
``GeofenceProjection`` (one spatial-index query for the whole batch, then one fold per
driver); ``write`` produces the transitions and dead letters, flushes, then saves the
drivers' states in one Redis pipeline with the counters. A crash in between re-delivers the
batch; the states' per-partition offsets make the re-fold skip what was already applied, and
transition ids are deterministic, so a consumer deduplicates what was produced twice.

The agent has its own consumer group (``<group>-geofences``) with the *range* assignor: it
needs partition p of ``kuailv.gps.v1`` and of ``kuailv.van-orders.v1`` together (both keyed
by driver, same partition count), which cooperative-sticky does not guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from projections.geofence_step import GeofenceProjection, fire_silences, gps_watermarks
from projections.keyed_batch import fold_batch
from projections.stage_times import ARRIVAL_ESTIMATOR
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, FLEET, GEOFENCE_TRANSITIONS, GPS, ORDER_ETAS
from streams.projection_builders import GEOFENCE_TOPICS
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.runtime.timers import PartitionTimers, RedisTimers
from streams.sinks.influx import InfluxWriter, eta_line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_geofences import RedisGeofenceStates

log = logging.getLogger(__name__)


class GeofenceAgent:
    name = "geofences"
    topics = GEOFENCE_TOPICS
    group_suffix = "-geofences"
    assignor = "range"

    def __init__(self, codec: AvroCodec, projection: GeofenceProjection, store: RedisGeofenceStates, output: Output,
                 stats: Any, *, consumer: str, wall_clock_ms: Callable[[], int], cache_keys: int = 50_000,
                 alerts: RedisAlerts | None = None, timers: RedisTimers | None = None,
                 influx: InfluxWriter | None = None) -> None:
        self.codec = codec
        self.influx = influx  # the predictions as a time series (measurement order_eta); None: not written
        self.timer_store = timers  # gps-silent timers (None: no silence rule)
        self.timers = PartitionTimers(timers.load) if timers is not None else None
        self.watermarks: dict[str, int] | None = None
        self.alerts = alerts  # the alert views in Redis ("driver nearby" notices)
        self.projection = projection
        self.store = store
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self._states: CachedStates[dict[str, Any]] = CachedStates(store.load, cache_keys)
        self._partition_of: dict[str, int] = {}  # driver -> its partition number (both inputs)

    def process(self, records: list[SourceRecord]) -> Staged:
        for partitions in self._states.apply_invalidations():
            self.watermarks = None
            if self.timers is not None:
                self.timers.forget(None if partitions is None else [(GPS.name, p) for _, p in partitions])
        result = fold_batch(self.projection, records, self._states)
        folded = {k: f.state for k, f in result.folded.items() if f.changed and f.state is not None}
        silence_alerts, moved = self._silences(result, folded)
        kafka: list[tuple[str, bytes, bytes]] = []
        states: list[tuple[str, dict[str, Any]]] = []
        entries = []
        transitions = 0
        alerts: list[dict[str, Any]] = list(silence_alerts)
        for value in silence_alerts:
            kafka.append((ALERTS.name, value["alert_id"].encode(), self.codec.encode("Alert", value),
                          value["updated_at"]))
        etas: list[dict[str, Any]] = []
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            f.state = folded[key]  # with a fired silence timer, if any
            for kind, value in f.outputs:
                if kind == "transition":
                    kafka.append((GEOFENCE_TRANSITIONS.name, key.encode(),
                                  self.codec.encode("GeofenceTransition", value), value["at"]))
                    transitions += 1
                elif kind == "eta":
                    kafka.append((ORDER_ETAS.name, value["order_id"].encode(), self.codec.encode("OrderEta", value),
                                  value["updated_at"]))  # when the record was decided (>= computed_at)
                    etas.append(value)
                elif kind == "status":  # the fleet view's input (re-dispatch)
                    kafka.append((FLEET.name, key.encode(), self.codec.encode("DriverStatus", value), value["at"]))
                else:
                    kafka.append((ALERTS.name, value["alert_id"].encode(), self.codec.encode("Alert", value),
                                  value["updated_at"]))
                    alerts.append(value)
            states.append((key, f.state))
            entries.append((key, f.state, result.partitions[key]))
        for key, state in folded.items():  # drivers only woken by a timer
            if key not in result.folded:
                states.append((key, state))
                entries.append((key, state, (GPS.name, self._partition_of[key])))
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        for key, state, partition in entries:
            self._states.put(key, state, partition)
        counts = result.counts
        counts.transitions_written = transitions
        counts.alerts_written = len(alerts)
        counts.etas_written = len(etas)
        dues = [(key, (GPS.name, self._partition_of[key]), state.get("silence_due")) for key, state in states]
        return Staged(records, kafka, (states, alerts, etas, dues, moved), counts)

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)  # (topic, key, value[, event-time timestamp ms])
        self.output.flush()
        states, alerts, etas, dues, moved = staged.payload
        if self.influx is not None:
            points = [eta_line(e) for e in etas if e["estimator"] != ARRIVAL_ESTIMATOR]
            if points:
                self.influx.write(points)
        pipe = self.stats.pipeline()
        self.store.save(states, pipe)
        if self.timer_store is not None:
            self.timer_store.save(dues, moved, pipe)
        self.store.save_etas(etas, pipe)
        if self.alerts is not None:
            self.alerts.publish(alerts, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def _silences(self, result: Any, folded: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Move the GPS partitions' watermarks and fire the gps-silent timers they pass (``folded`` gets
        the woken drivers' new states)."""
        for key in result.folded:
            self._partition_of[key] = result.partitions[key][1]
        if self.timers is None or self.projection.rules is None:
            return [], {}
        if self.watermarks is None:
            assert self.timer_store is not None
            self.watermarks = self.timer_store.watermarks()
        for key, state in folded.items():
            self.timers.set(key, state.get("silence_due"), (GPS.name, self._partition_of[key]))
        moved = gps_watermarks(result, self.watermarks, self.projection.ctx.allowed_lateness_ms, GPS.name)
        alerts: list[dict[str, Any]] = []
        for where, mark in sorted(moved.items()):
            partition = (GPS.name, int(where.rpartition(":")[2]))
            due = self.timers.due(partition, mark)
            if not due:
                continue
            known = {k: folded[k] for k in due if k in folded}
            known.update(self._states([k for k in due if k not in known]))
            fired, new = fire_silences(known, mark, self.projection.rules)
            alerts += fired
            for key, state in new.items():
                folded[key] = state
                self._partition_of[key] = partition[1]
                self.timers.set(key, state.get("silence_due"), partition)
        self.watermarks.update(moved)
        return alerts, moved

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], [], [], [], {}))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        if self.influx is not None:
            self.influx.close()
