"""What every stateful agent does with its keys' states between batches, in one place.

``CachedStates`` serves ``fold_batch``'s ``state_of``: the worker's own cache first (it owns its
partitions; the state it wrote last is the state), the store on a miss. Invalidations come from
other threads (the consumer's revoke callback, the sink thread) and are applied by the main thread
before it folds the next batch, so the cache is only ever touched by one thread.

``parked`` is the ``Staged`` of a batch the agent could not process at all: every record a
``PROCESSING_ERROR`` dead letter, nothing else written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from projections.keyed_batch import Counts, processing_error
from schemas.dead_letters import SourceRecord
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.state_cache import Entry, StateCache

S = TypeVar("S")


class CachedStates(Generic[S]):
    def __init__(self, load: Callable[[Sequence[str]], Mapping[str, S]], max_keys: int) -> None:
        self._load = load
        self.cache: StateCache[S] = StateCache(max_keys)
        self._invalid: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, keys: Sequence[str]) -> dict[str, S]:
        out: dict[str, S] = {}
        missing = []
        for key in keys:
            entry = self.cache.get(key)
            if entry is None:
                missing.append(key)
            else:
                out[key] = entry.state
        if missing:
            out.update(self._load(missing))
        return out

    def put(self, key: str, state: S, partition: Partition, memo: Any = None) -> None:
        self.cache.put(key, Entry(state, partition, memo))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        """From any thread: drop the states of these partitions (all: None) before the next batch."""
        with self._lock:
            self._invalid.append(("all", None) if partitions is None else ("partitions", list(partitions)))

    def discard(self, keys: Sequence[str]) -> None:
        """From any thread: reload these keys from the store (e.g. a write the store refused)."""
        with self._lock:
            self._invalid.append(("keys", list(keys)))

    def apply_invalidations(self) -> list[Sequence[Partition] | None]:
        """Main thread, before a batch: apply what other threads asked for; returns the partitions
        forgotten (None: all), for the agent's own per-partition bookkeeping."""
        if not self._invalid:
            return []
        with self._lock:
            todo, self._invalid = self._invalid, []
        forgotten: list[Sequence[Partition] | None] = []
        for kind, what in todo:
            if kind == "all":
                self.cache.clear()
                forgotten.append(None)
            elif kind == "partitions":
                self.cache.drop_partitions(what)
                forgotten.append(what)
            else:
                self.cache.discard(what)
        return forgotten


def parked(records: list[SourceRecord], reason: str, codec: Any, consumer: str, failed_at: int,
           payload: Any) -> Staged:
    kafka = [processing_error(rec, reason).encode(codec, consumer, failed_at) for rec in records]
    return Staged(records, kafka, payload, Counts(records=len(records), dead_letters=len(records)))


def dead_letter_records(dead: Sequence[Any], codec: Any, consumer: str, now: Callable[[], int],
                        log: logging.Logger) -> list[tuple[str, bytes, bytes]]:
    """A batch's dead letters (``schemas.dead_letters.DeadLetter``) as Kafka records for the dead-letter topic,
    each logged, all stamped with one ``now()`` (the only wall-clock read: ``failed_at``)."""
    if not dead:
        return []
    failed_at = now()
    records = []
    for d in dead:
        log.warning("dead letter: %s", d)
        records.append(d.encode(codec, consumer, failed_at))
    return records
