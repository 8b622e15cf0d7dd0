"""The stock agent: ``kuailv.stock.v1`` -> stock levels (Redis, InfluxDB ``stock_level``), low-stock alerts
(``kuailv.alerts.v1``, Redis alert views) and replenishment suggestions (``kuailv.replenishment-suggestions.v1``,
Redis).

``process`` folds the batch with ``projections.stock.StockProjection`` (key ``warehouse_id/sku``, levels on);
``write`` produces the alerts, suggestions and dead letters, flushes, writes the level points, then saves the
states, level views, suggestions, alert views and counters in one Redis pipeline. A crash in between
re-delivers the batch; the states' applied offsets skip it, and the records' ids are the same when produced
twice (alerts and suggestions are on compacted topics; an Influx point of the same series and time is
overwritten).

Own consumer group ``<group>-stock``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from projections.keyed_batch import fold_batch
from projections.stock import StockProjection
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, REPLENISHMENT_SUGGESTIONS, STOCK
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.sinks.influx import InfluxWriter, alert_line, line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_stock import RedisStock

log = logging.getLogger(__name__)


def stock_level_line(p: Mapping[str, Any]) -> str:
    """One ``stock_level`` point per movement applied."""
    return line("stock_level", {"warehouse_id": p["warehouse_id"], "sku": p["sku"], "unit": p["unit"]},
                {"on_hand": float(p["on_hand"]), "picked_today": float(p["picked_today"]),
                 "short_today": float(p["short_today"])}, int(p["event_time"]))


class StockAgent:
    name = "stock"
    topics = (STOCK.name,)
    group_suffix = "-stock"

    def __init__(self, codec: AvroCodec, projection: StockProjection, store: RedisStock, alerts: RedisAlerts,
                 influx: InfluxWriter, output: Output, stats: Any, *, consumer: str,
                 wall_clock_ms: Callable[[], int], cache_keys: int = 10_000) -> None:
        self.codec = codec
        self.projection = projection
        self.store = store
        self.alerts = alerts
        self.influx = influx
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self._states: CachedStates[dict[str, Any]] = CachedStates(store.load, cache_keys)

    def process(self, records: list[SourceRecord]) -> Staged:
        self._states.apply_invalidations()
        result = fold_batch(self.projection, records, self._states)
        kafka: list[tuple[Any, ...]] = []
        states: list[tuple[str, dict[str, Any]]] = []
        suggestions: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        points: list[str] = []
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            for kind, v in f.outputs:
                if kind == "level":
                    points.append(stock_level_line(v))
                elif kind == "alert":
                    kafka.append((ALERTS.name, v["alert_id"].encode(), self.codec.encode("Alert", v), v["updated_at"]))
                    alerts.append(v)
                else:
                    kafka.append((REPLENISHMENT_SUGGESTIONS.name, v["stock_key"].encode(),
                                  self.codec.encode("ReplenishmentSuggestion", v), v["decided_at"]))
                    suggestions.append(v)
            states.append((key, f.state))
            self._states.put(key, f.state, result.partitions[key])
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        counts = result.counts
        counts.alerts_written = len(alerts)
        counts.points_written = len(points)
        return Staged(records, kafka, (states, suggestions, alerts, points), counts)

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)
        self.output.flush()
        states, suggestions, alerts, points = staged.payload
        lines = points + [alert_line(a) for a in alerts]
        if lines:
            self.influx.write(lines)
        pipe = self.stats.pipeline()
        self.store.save(states, pipe)
        self.store.save_suggestions(suggestions, pipe)
        self.alerts.publish(alerts, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], [], [], []))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        self.influx.close()
