"""Replay of the per-driver and alert projections from their input topics, in one process.

``kuailv replay --projection geofences|alerts --topic`` runs the same pure projections as the
worker's ``geofences`` and ``alerts`` agents (``projections.geofence_step``,
``projections.alert_step``) over the whole history:

* the input topics (co-partitioned: same key, same partition count) are read to their end and
  merged **per partition by Kafka timestamp** (event time: producers set it), each topic-partition
  kept in offset order, which is the order a live worker sees when the inputs are timely
  (dispatch long before arrival);
* batches go through ``projections.timed_batch.TimedBatches`` (fold, then the event-time timers
  the batch makes due: gps-silent, late delivery, stuck), as in the agents and the Flink job
  (``jobs/timed_projection_job.py``), with the states in memory instead of Redis.

``replay_kpis`` (``kuailv replay --projection kpis``) chains the three KPI stages the same way, each
over the records the previous one would have published (``docs/kpis.md``).

The outputs are what the worker would have published: transitions and alert records in order,
plus dead letters. History is held in memory (fine for days of a city's telemetry on one
machine; a spill like the order replay's is not built).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.alert_step import AlertProjection
from projections.fleet import FleetProjection
from projections.geofence_step import GeofenceProjection
from projections.timed_batch import TimedBatches, alert_timing, geofence_timing
from schemas.dead_letters import DeadLetter, SourceRecord
from streams.replay import read_topic


@dataclass
class StreamReplay:
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # ("transition"|"alert", record)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    records: int = 0
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def alerts(self) -> dict[str, dict[str, Any]]:
        """The latest record per alert id (what the compacted topic keeps)."""
        latest: dict[str, dict[str, Any]] = {}
        for kind, value in self.outputs:
            if kind == "alert":
                latest[value["alert_id"]] = value
        return latest

    def transitions(self) -> list[dict[str, Any]]:
        return [v for kind, v in self.outputs if kind == "transition"]

    def figures(self) -> dict[str, dict[str, Any]]:
        """The latest ``KpiFigures`` per window (what the compacted ``kuailv.kpis.v1`` keeps)."""
        return {v["window_key"]: v for kind, v in self.outputs if kind == "kpi"}


def merged_by_time(streams: Sequence[Iterable[SourceRecord]]) -> list[list[SourceRecord]]:
    """One list per partition: the streams' records of that partition merged the way Kafka Streams
    synchronises co-partitioned inputs: each topic-partition stays in offset order (a log is never
    reordered), and the next record is the head with the smallest timestamp (ties: the earlier
    stream)."""
    heads: dict[int, list[list[SourceRecord]]] = {}
    for index, stream in enumerate(streams):
        for rec in stream:
            per_stream = heads.setdefault(rec.partition, [[] for _ in streams])
            per_stream[index].append(rec)
    out = []
    for partition in sorted(heads):
        queues = [sorted(q, key=lambda r: r.offset) for q in heads[partition]]
        positions = [0] * len(queues)
        heap = [(_ts(q[0]), i) for i, q in enumerate(queues) if q]
        heapq.heapify(heap)
        merged = []
        while heap:
            _, i = heapq.heappop(heap)
            merged.append(queues[i][positions[i]])
            positions[i] += 1
            if positions[i] < len(queues[i]):
                heapq.heappush(heap, (_ts(queues[i][positions[i]]), i))
        out.append(merged)
    return out


def _ts(rec: SourceRecord) -> int:
    return rec.timestamp_ms if rec.timestamp_ms is not None else 0


def _batches(partitions: list[list[SourceRecord]], size: int) -> Iterator[list[SourceRecord]]:
    for records in partitions:
        for i in range(0, len(records), size):
            yield records[i:i + size]


def replay_geofences(projection: GeofenceProjection, partitions: list[list[SourceRecord]],
                     batch: int = 2000) -> StreamReplay:
    return _replay(TimedBatches(projection, geofence_timing(projection)), partitions, batch)


def replay_alerts(projection: AlertProjection, partitions: list[list[SourceRecord]], lateness_ms: int,
                  batch: int = 500) -> StreamReplay:
    return _replay(TimedBatches(projection, alert_timing(projection, lateness_ms)), partitions, batch)


def replay_fleet(projection: FleetProjection, partitions: list[list[SourceRecord]], batch: int = 2000
                 ) -> StreamReplay:
    """``kuailv.fleet.v1`` (one partition, one key) through the fleet projection: re-dispatch suggestions."""
    return _replay(TimedBatches(projection, None), partitions, batch)


def replay_stock(projection: Any, partitions: list[list[SourceRecord]], batch: int = 2000) -> StreamReplay:
    """``kuailv.stock.v1`` through the stock projection (``projections.stock``): low-stock alerts and replenishment
    suggestions, in each partition's offset order as the worker's stock agent sees them."""
    return _replay(TimedBatches(projection, None), partitions, batch)


def _replay(steps: TimedBatches, partitions: list[list[SourceRecord]], batch: int) -> StreamReplay:
    """``TimedBatches.step`` over every batch, with the states, timer indexes and watermarks in memory."""
    out = StreamReplay()
    states = out.states
    indexes: dict[str, dict[str, int]] = {}
    watermarks: dict[str, int] = {}
    for records in _batches(partitions, batch):
        stepped = steps.step(records, lambda keys: {k: states[k] for k in keys if k in states},
                             lambda where: indexes.setdefault(where, {}), watermarks)
        out.records += len(records)
        states.update(stepped.states)
        out.outputs += stepped.outputs
        out.dead_letters += stepped.dead_letters
    return out


def read_merged(bootstrap: str, topics: Sequence[str], renames: Mapping[str, str] | None = None
                ) -> list[list[SourceRecord]]:
    """The contract ``topics`` (read from their ``renames``, if any, and named by contract name again,
    as the worker's batch loop does) merged per partition by time."""
    renames = renames or {}
    streams = []
    for topic in topics:
        actual = renames.get(topic, topic)
        streams.append([r if actual == topic else dataclasses.replace(r, topic=topic)
                        for r in read_topic(bootstrap, actual)])
    return merged_by_time(streams)


def kpi_records(codec: Any, outputs: Sequence[tuple[str, dict[str, Any]]], partitions: int
                ) -> list[list[SourceRecord]]:
    """A KPI stage's outputs as the records its output topic would hold: partition by the key's murmur2 hash
    (as the producer does), offsets in publishing order, timestamps the records' event times."""
    from projections.kpi_step import OUTPUTS
    from schemas.partitioning import murmur2_partition

    per: dict[int, list[SourceRecord]] = {}
    for kind, value in outputs:
        topic, record_type, key_field, time_field = OUTPUTS[kind]
        key = value[key_field].encode()
        p = murmur2_partition(key, partitions)
        queue = per.setdefault(p, [])
        queue.append(SourceRecord(topic, p, len(queue), key, codec.encode(record_type, value), value[time_field]))
    return [per[p] for p in sorted(per)]


def replay_kpis(codec: Any, alerts: list[list[SourceRecord]], order_states: list[list[SourceRecord]],
                batch: int = 2000) -> StreamReplay:
    """The three KPI stages (``projections.kpi_step``) in one process, each over what the previous one
    published: exposures from ``kuailv.alerts.v1``; the order stage over ``kuailv.order-state.v1`` merged per
    partition (by time) with those exposures; the window stage over the contributions. ``outputs`` holds
    every stage's outputs in order (``kpi-exposure``, ``kpi-contribution``, ``kpi``); ``figures()`` the latest
    ``KpiFigures`` per window."""
    from projections.kpi_step import KpiExposureProjection, KpiOrderProjection, KpiWindowProjection
    from schemas.topics import KPI_CONTRIBUTIONS, KPI_EXPOSURES

    exposures = _replay(TimedBatches(KpiExposureProjection(codec), None), alerts, batch)
    exposure_records = kpi_records(codec, exposures.outputs, KPI_EXPOSURES.partitions)
    merged = merged_by_time([[r for p in order_states for r in p], [r for p in exposure_records for r in p]])
    orders = _replay(TimedBatches(KpiOrderProjection(codec), None), merged, batch)
    contributions = kpi_records(codec, orders.outputs, KPI_CONTRIBUTIONS.partitions)
    windows = _replay(TimedBatches(KpiWindowProjection(codec), None), contributions, batch)
    return StreamReplay(outputs=exposures.outputs + orders.outputs + windows.outputs,
                        dead_letters=exposures.dead_letters + orders.dead_letters + windows.dead_letters,
                        records=exposures.records + sum(len(p) for p in order_states), states=windows.states)
