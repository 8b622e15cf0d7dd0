"""The KPI agents: the three stages of ``projections.kpi_step`` in the worker (``docs/kpis.md``).

* ``kpi-exposures``: ``kuailv.alerts.v1`` -> ``kuailv.kpi-exposures.v1`` (exposure alerts fanned out per order);
* ``kpi-orders``: ``kuailv.order-state.v1`` + ``kuailv.kpi-exposures.v1`` (both keyed by order id, same
  partition count; the *range* assignor gives one consumer partition p of both) ->
  ``kuailv.kpi-contributions.v1`` (keyed by window);
* ``kpis``: ``kuailv.kpi-contributions.v1`` -> ``kuailv.kpis.v1`` (compacted), the Redis hash of each window
  (``streams.sinks.redis_kpis``) and the InfluxDB measurements ``kpi`` (tags dimension, id; time the
  window's Beijing midnight: a re-written point replaces the figures) and ``kpi_intraday`` (same tags and
  fields; time the window's newest contributing event time, ``as_of``, floored to 5 minutes: the figures'
  history through the day, and a replay rewrites the same points).

Each stage is its own agent with its own consumer group (``<group>-<stage>``), so a window's state is
owned by the one consumer of its partition, however many workers run. ``process`` folds the batch
(``fold_batch``); ``write`` produces the outputs and dead letters, flushes, then writes InfluxDB and
saves the states and figures in one Redis pipeline. A crash in between re-delivers the batch: the
states' applied offsets skip it, and every stage keeps the newest revision per order, so what was
produced twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from projections.keyed_batch import fold_batch
from projections.kpi_step import OUTPUTS, STAGES
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.sinks.influx import line
from streams.sinks.kafka_output import Output
from streams.sinks.redis_kpis import RedisKpis

log = logging.getLogger(__name__)
_TAGS = ("window_key", "dimension", "dimension_id", "day", "day_start")
INTRADAY_MS = 5 * 60_000


def kpi_line(f: Mapping[str, Any], measurement: str = "kpi") -> str:
    """One InfluxDB point per window: ``kpi,dimension=..,id=.. <figures> <Beijing midnight>``; with
    ``measurement="kpi_intraday"``, at ``intraday_ms(f)`` instead."""
    fields = {k: (float(v) if v is not None and k.endswith(("_kg", "_rate")) else v)
              for k, v in sorted(f.items()) if k not in _TAGS}
    at = f["day_start"] if measurement == "kpi" else intraday_ms(f)
    return line(measurement, {"dimension": f["dimension"], "id": f["dimension_id"]}, fields, at)


def intraday_ms(f: Mapping[str, Any]) -> int:
    """The ``kpi_intraday`` time of a figures update: its newest contributing event time floored to 5 minutes
    (event time, never the wall clock: a replay rewrites the same points)."""
    return f["as_of"] - f["as_of"] % INTRADAY_MS


def influx_lines(figures: Sequence[Mapping[str, Any]]) -> list[str]:
    """The points of a batch's figures updates: each window's latest in ``kpi``, and in ``kpi_intraday`` the
    latest of each (window, 5-minute step)."""
    latest = {f["window_key"]: f for f in figures}
    steps = {(f["window_key"], intraday_ms(f)): f for f in figures}
    return [kpi_line(f) for f in latest.values()] + [kpi_line(f, "kpi_intraday") for f in steps.values()]


class KpiAgent:
    assignor = "range"  # kpi-orders reads two co-partitioned topics; harmless for the others

    def __init__(self, stage: str, codec: AvroCodec, store: RedisKpis, influx: Any, output: Output, stats: Any, *,
                 consumer: str, wall_clock_ms: Callable[[], int], cache_keys: int = 50_000) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown KPI stage {stage!r}; known: {', '.join(STAGES)}")
        projection, topics = STAGES[stage]
        self.name = stage
        self.topics = topics
        self.group_suffix = f"-{stage}"
        self.projection = projection(codec)
        self.codec = codec
        self.store = store
        self.influx = influx  # only the window stage writes points
        self.output = output
        self.stats = stats
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self._states: CachedStates[dict[str, Any]] = CachedStates(lambda keys: store.load(stage, keys), cache_keys)

    def process(self, records: list[SourceRecord]) -> Staged:
        self._states.apply_invalidations()
        result = fold_batch(self.projection, records, self._states)
        kafka: list[tuple[Any, ...]] = []
        states: list[tuple[str, dict[str, Any]]] = []
        figures: list[dict[str, Any]] = []
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            for kind, value in f.outputs:
                topic, record_type, key_field, time_field = OUTPUTS[kind]
                kafka.append((topic, value[key_field].encode(), self.codec.encode(record_type, value),
                              value[time_field]))
                if kind == "kpi":
                    figures.append(value)
            states.append((key, f.state))
            self._states.put(key, f.state, result.partitions[key])
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        return Staged(records, kafka, (states, figures), result.counts)

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)
        self.output.flush()
        states, figures = staged.payload
        if figures and self.influx is not None:
            self.influx.write(influx_lines(figures))
        pipe = self.stats.pipeline()
        self.store.save(self.name, states, pipe)
        self.store.save_figures(figures, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        pipe.execute()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), ([], []))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        if self.influx is not None:
            self.influx.close()
