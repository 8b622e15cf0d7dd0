"""The order-state agent: ``kuailv.order-events.v1`` -> Redis + ``kuailv.order-state.v1`` (+ van orders).

The hot-path pattern (``docs/hot-path.md``) for one projection:

* ``process`` (main thread, CPU): ``projections.keyed_batch.fold_batch`` with
  ``OrderProjection``; states come from the worker's cache, misses from Redis in one
  round trip. Each order whose view changed gets ONE projection record per batch,
  encoded incrementally from its previous encoding. Nothing is written yet.
* ``write`` (sink thread, I/O): projection records and dead letters are produced and
  flushed (``acks=all``) *before* the Redis write, which is one Lua call for the whole
  batch, pipelined with the counters. A crash between the two re-delivers the batch;
  the fold then recomputes the same output (or sees duplicates of what Redis holds).
* An order whose place on a van changed also gets ``VanOrder`` records on
  ``kuailv.van-orders.v1``, keyed by driver (``projections.van_orders``): the geofence agent's
  input, so per-driver decisions never read Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from projections.keyed_batch import fold_batch
from projections.order_state import State
from projections.order_step import OrderProjection, derived_records
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ORDER_EVENTS, ORDER_STATE
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import CachedStates, dead_letter_records, parked
from streams.runtime.state_cache import Entry
from streams.sinks.kafka_output import Output
from streams.sinks.redis_orders import OrderWrite, RedisOrderStore

log = logging.getLogger(__name__)


class OrderStateAgent:
    name = "orders"
    topics = (ORDER_EVENTS.name,)

    def __init__(self, codec: AvroCodec, store: RedisOrderStore, output: Output, stats: Any, *, consumer: str,
                 wall_clock_ms: Callable[[], int], cache_keys: int = 50_000) -> None:
        self.codec = codec
        self.projection = OrderProjection(codec)
        self.store = store
        self.output = output
        self.stats = stats  # streams.sinks.stats.StatsSink
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at; decisions use event time
        self._states: CachedStates[State] = CachedStates(store.load, cache_keys)
        self.cache = self._states.cache  # states, with each one's encoded view as its memo

    def process(self, records: list[SourceRecord]) -> Staged:
        self._states.apply_invalidations()
        result = fold_batch(self.projection, records, self._states)
        kafka: list[tuple[str, bytes, bytes]] = []
        writes: list[OrderWrite] = []
        entries: list[tuple[str, Entry[State]]] = []
        partition = (records[0].topic, records[0].partition)
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            cached = self.cache.peek(key)
            memo = cached.memo if cached is not None else None
            projection = None
            if f.published:
                memo = self.projection.encode_view(f.state, memo)
                projection = memo.data
                kafka.append((ORDER_STATE.name, key.encode(), projection))
            # every move between vans of this batch, in version order, and re-dispatch requests
            kafka += derived_records(self.codec, f.outputs)
            writes.append(OrderWrite(key, f.state, projection))
            entries.append((key, Entry(f.state, result.partitions.get(key, partition), memo)))
        kafka += dead_letter_records(result.dead_letters, self.codec, self.consumer, self._now, log)
        for key, entry in entries:  # only now: an exception above leaves the cache as it was
            self.cache.put(key, entry)
        counts = result.counts
        counts.orders_written = len(writes)
        return Staged(records, kafka, writes, counts)

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)  # (topic, key, value[, event-time timestamp ms])
        self.output.flush()
        pipe = self.stats.pipeline()
        if staged.payload:
            self.store.save(staged.payload, pipe)
        self.stats.add(pipe, self.name, staged.counts)
        results = pipe.execute()
        refused = results[0] if staged.payload else []
        if refused:
            # Another worker wrote a newer state (we lost the partition): forget ours.
            ids = [r.decode() if isinstance(r, bytes) else r for r in refused]
            log.warning("redis refused %d stale order writes (e.g. %s): reloading them", len(ids), ids[:3])
            self._states.discard(ids)

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), [])

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        self._states.forget(partitions)

    def close(self) -> None:
        return None
