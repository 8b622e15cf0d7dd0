"""The fleet agent: ``kuailv.fleet.v1`` -> re-dispatch suggestions (``kuailv.redispatch-suggestions.v1``, Redis)
and cold-chain exposure alerts (``kuailv.alerts.v1``, Redis alert views).

The topic has one partition: the drivers' statuses (from the geofence agent), the re-dispatch
requests (from the order agent) and the vans' sensor readings (from the alert agent) of the whole
fleet, in one order. ``process`` folds the batch with
``projections.fleet.FleetProjection`` (one key, ``fleet``); ``write`` produces the suggestions and
dead letters, flushes, then saves the fleet state, the suggestions and the counters in one Redis
pipeline. A crash in between re-delivers the batch; the state's applied offset skips it, and a
suggestion's id (order#dispatch) is the same when it is produced twice.

Own consumer group ``<group>-fleet``: one consumer holds the partition; another worker process
takes over when it goes away (a standby, not a speed-up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from projections.fleet import FleetProjection
from projections.keyed_batch import fold_batch
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, FLEET, REDISPATCH_SUGGESTIONS
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.sinks.influx import InfluxWriter, alert_line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_fleet import RedisFleet

log = logging.getLogger(__name__)


class FleetAgent:
    name = "fleet"
    topics = (FLEET.name,)
    group_suffix = "-fleet"

    def __init__(self, codec: AvroCodec, projection: FleetProjection, store: RedisFleet, alerts: RedisAlerts,
                 influx: InfluxWriter, output: Output, stats: Any, *, consumer: str,
                 wall_clock_ms: Callable[[], int]) -> None:
        self.codec = codec
        self.alerts = alerts  # a van's cold-chain alerts in the alert views (and InfluxDB), like the alert agent's
        self.influx = influx
        self.projection = projection
        self.store = store
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self._states: CachedStates[dict[str, Any]] = CachedStates(store.load, 1)

    def process(self, records: list[SourceRecord]) -> Staged:
        self._states.apply_invalidations()
        result = fold_batch(self.projection, records, self._states)
        kafka: list[tuple[Any, ...]] = []
        states: list[tuple[str, dict[str, Any]]] = []
        suggestions: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            for kind, v in f.outputs:
                if kind == "alert":  # cold-chain exposure per trip
                    kafka.append((ALERTS.name, v["alert_id"].encode(), self.codec.encode("Alert", v), v["updated_at"]))
                    alerts.append(v)
                    continue
                kafka.append((REDISPATCH_SUGGESTIONS.name, v["order_id"].encode(),
                              self.codec.encode("RedispatchSuggestion", v), v["decided_at"]))
                suggestions.append(v)
                log.info("re-dispatch %s: %s -> %s (%s)", v["suggestion_id"], v["from_driver_id"],
                         v["to_driver_id"], v["reason"])
            states.append((key, f.state))
            self._states.put(key, f.state, result.partitions[key])
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        counts = result.counts
        counts.alerts_written = len(alerts)
        return Staged(records, kafka, (states, suggestions, alerts), counts)

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)
        self.output.flush()
        states, suggestions, alerts = staged.payload
        if alerts:
            self.influx.write([alert_line(a) for a in alerts])
        pipe = self.stats.pipeline()
        self.store.save(states, pipe)
        self.store.save_suggestions(suggestions, pipe)
        self.alerts.publish(alerts, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], [], []))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        self.influx.close()
