"""What the geofence and alert Flink jobs do per batch, without PyFlink.

The job (``jobs/timed_projection_job.py``) is keyed by Kafka *partition number*: partition p of
each co-partitioned input meets under one key. Per key, keyed state holds

* ``states``: the projection's state per driver / order / device (orjson bytes),
* ``timers``: the timer index {state key: next due} (gps-silent, late delivery, stuck),
* ``marks``: the event-time watermark per timer partition (``"topic:partition"``),
* ``pending``: the records held by ``jobs.event_time_merge`` until Flink's watermark passes them.

``add`` takes a batch from the source, ``release`` runs what Flink's watermark has passed through
``projections.timed_batch.TimedBatches`` (fold + the timers it makes due, exactly as ``kuailv
replay`` does) and returns ``(topic, key, value)`` records for the topic-routing sink.
``KeyedStore`` is the state interface; the job implements it over ``MapState``s, the tests over
dicts. Reads of ``states`` go through a bounded cache of decoded states (only this operator
instance writes its keys between restores; a restore makes a new instance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from jobs.event_time_merge import EventTimeMerge
from projections.keyed_batch import Counts
from projections.kpi_step import OUTPUTS as KPI_OUTPUTS
from projections.timed_batch import Output, TimedBatches
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import (
    ALERTS,
    FLEET,
    GEOFENCE_TRANSITIONS,
    ORDER_ETAS,
    REDISPATCH_SUGGESTIONS,
    REPLENISHMENT_SUGGESTIONS,
)

Record = tuple[str, bytes, bytes]
_ENCODING = {  # output kind -> (topic, record type, key field)
    "transition": (GEOFENCE_TRANSITIONS.name, "GeofenceTransition", "driver_id"),
    "eta": (ORDER_ETAS.name, "OrderEta", "order_id"),
    "alert": (ALERTS.name, "Alert", "alert_id"),
    "status": (FLEET.name, "DriverStatus", "driver_id"),
    "suggestion": (REDISPATCH_SUGGESTIONS.name, "RedispatchSuggestion", "order_id"),
    "reading": (FLEET.name, "SensorReading", "vehicle_id"),  # vehicle readings forwarded to the fleet view
    "replenishment": (REPLENISHMENT_SUGGESTIONS.name, "ReplenishmentSuggestion", "stock_key"),  # projections.stock
    **{kind: (topic, record_type, key) for kind, (topic, record_type, key, _) in KPI_OUTPUTS.items()},
}


class KeyedStore(Protocol):
    """The keyed state of one Flink key (one partition number)."""

    def get_state(self, key: str) -> bytes | None: ...
    def put_states(self, values: Mapping[str, bytes]) -> None: ...
    def timers(self) -> Iterable[tuple[str, int]]: ...
    def put_timers(self, dues: Mapping[str, int | None]) -> None: ...  # None: remove
    def marks(self) -> Iterable[tuple[str, int]]: ...
    def put_marks(self, marks: Mapping[str, int]) -> None: ...
    def pending(self) -> Iterable[tuple[str, bytes]]: ...
    def put_pending(self, values: Mapping[str, bytes | None]) -> None: ...  # None: remove


@dataclasses.dataclass
class _Partition:
    """What this operator instance knows of one partition key (rebuilt from the store after a restore)."""

    merge: EventTimeMerge
    timers: dict[str, dict[str, int]]  # timer partition -> {key: due}
    marks: dict[str, int]


class TimedProjectionLogic:
    def __init__(self, steps: TimedBatches, codec: AvroCodec, consumer: str, topics: Sequence[str],
                 wall_clock_ms: Callable[[], int], *, inputs: Mapping[str, str] | None = None,
                 cache_keys: int = 50_000) -> None:
        self.steps = steps
        self.codec = codec
        self.consumer = consumer
        self.topics = tuple(topics)  # the contract names of the inputs, in merge-tie order
        self.inputs = dict(inputs or {})  # actual topic read -> contract name (side topics in tests)
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self.cache_keys = cache_keys
        self._cache: dict[str, dict[str, Any]] = {}
        self._parts: dict[str, _Partition] = {}
        self.totals = Counts()

    def _part(self, pkey: str, store: KeyedStore) -> _Partition:
        part = self._parts.get(pkey)
        if part is None:
            timers: dict[str, dict[str, int]] = {}
            marks = dict(store.marks())
            for key, due in store.timers():
                where, _, state_key = key.partition("|")
                timers.setdefault(where, {})[state_key] = due
            part = self._parts[pkey] = _Partition(EventTimeMerge.load(self.topics, dict(store.pending())), timers,
                                                  marks)
        return part

    def add(self, pkey: str, records: Sequence[SourceRecord], store: KeyedStore, watermark: int) -> list[Record]:
        """A source batch of one topic-partition: hold it, then release what ``watermark`` passed."""
        if self.inputs:
            records = [dataclasses.replace(r, topic=self.inputs.get(r.topic, r.topic)) for r in records]
        part = self._part(pkey, store)
        touched = part.merge.add(records)
        return self._release(part, store, watermark, touched)

    def release(self, pkey: str, store: KeyedStore, watermark: int) -> list[Record]:
        """Flink's watermark moved (an event-time timer of this key fired)."""
        return self._release(self._part(pkey, store), store, watermark, set())

    def next_due(self, pkey: str) -> int | None:
        part = self._parts.get(pkey)
        return None if part is None else part.merge.next_due()

    def _release(self, part: _Partition, store: KeyedStore, watermark: int, touched: set[str]) -> list[Record]:
        records, released = part.merge.release(watermark)
        touched |= released
        out: list[Record] = []
        if records:
            out = self._step(part, store, records)
        if touched:
            store.put_pending({t: part.merge.dump(t) for t in sorted(touched)})
        return out

    def _step(self, part: _Partition, store: KeyedStore, records: list[SourceRecord]) -> list[Record]:
        cache = self._cache

        def load(keys: Sequence[str]) -> dict[str, dict[str, Any]]:
            found = {}
            for key in keys:
                state = cache.get(key)
                if state is None:
                    raw = store.get_state(key)
                    if raw is None:
                        continue
                    state = cache[key] = orjson.loads(raw)
                found[key] = state
            return found

        marks_before = dict(part.marks)
        stepped = self.steps.step(records, load, lambda where: part.timers.setdefault(where, {}), part.marks)
        self.totals.add(stepped.counts)
        if stepped.states:
            store.put_states({k: orjson.dumps(s) for k, s in stepped.states.items()})
            for key, state in stepped.states.items():
                cache.pop(key, None)
                cache[key] = state
        if stepped.dues:
            store.put_timers({f"{where}|{key}": due for key, (where, due) in stepped.dues.items()})
        moved = {w: m for w, m in part.marks.items() if marks_before.get(w) != m}
        if moved:
            store.put_marks(moved)
        while len(cache) > self.cache_keys:
            del cache[next(iter(cache))]
        out = [self._encode(o) for o in stepped.outputs]
        if stepped.dead_letters:
            failed_at = self._now()
            out += [d.encode(self.codec, self.consumer, failed_at) for d in stepped.dead_letters]
        return out

    def _encode(self, output: Output) -> Record:
        kind, value = output
        topic, record_type, key_field = _ENCODING[kind]
        return topic, value[key_field].encode(), self.codec.encode(record_type, value)

    def clear(self) -> None:
        self._cache.clear()
        self._parts.clear()
