"""Decode -> fold -> write for a batch of order-event records. Engine-agnostic:
the Faust agent, the benchmark and tests all call ``OrderProjector.process``.

Order of writes per batch (at-least-once in, idempotent out):
1. projection records and dead letters are produced and flushed (acks=all);
2. fold states go to Redis (compare-and-set on version);
3. only then does the caller ack the offsets.
A crash between any two steps re-delivers the batch; the fold sees the events
as duplicates of what Redis already holds, or recomputes the same output.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from projections.order_state import State
from projections.order_step import decode_order_record, fold_records, projection_record
from projections.order_view import public_view
from schemas.codec import AvroCodec, Decoded
from schemas.dead_letters import DeadLetter
from schemas.topics import ORDER_STATE
from streams.batch_stats import BatchStats
from streams.sinks.redis_orders import OrderStore, OrderWrite
from streams.source import SourceRecord

log = logging.getLogger(__name__)


class Output(Protocol):
    def add(self, topic: str, key: bytes, value: bytes) -> None: ...

    def flush(self) -> int: ...


class OrderProjector:
    def __init__(self, codec: AvroCodec, store: OrderStore, output: Output, *, consumer: str,
                 wall_clock_ms: Callable[[], int], flush_in_thread: bool = True) -> None:
        self.codec = codec
        self.store = store
        self.output = output
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at; decisions use event time
        self._flush_in_thread = flush_in_thread
        self.totals = BatchStats()

    async def process(self, batch: Sequence[SourceRecord]) -> BatchStats:
        stats = BatchStats(records=len(batch))
        dead: list[DeadLetter] = []
        by_order: dict[str, list[tuple[SourceRecord, Decoded]]] = {}
        for rec in batch:
            outcome = decode_order_record(self.codec, rec)
            if isinstance(outcome, DeadLetter):
                dead.append(outcome)
            else:
                by_order.setdefault(outcome.value["order_id"], []).append((rec, outcome))

        states = await self.store.load(list(by_order))
        writes: list[OrderWrite] = []
        for order_id, items in by_order.items():
            try:
                write = self._fold_order(order_id, states.get(order_id), items, stats, dead)
            except Exception as exc:  # a bug must not stop the worker: park the order's records
                log.exception("fold failed for order %s at %s", order_id, items[0][0].position)
                reason = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3).splitlines()[-1]}"
                dead.extend(DeadLetter(r, "PROCESSING_ERROR", reason, d.value.get("event_id"), d.record_type,
                                       d.schema_id) for r, d in items)
                continue
            if write is not None:
                writes.append(write)

        failed_at = self._now()
        for d in dead:
            log.warning("dead letter: %s", d)
            self.output.add(*d.encode(self.codec, self.consumer, failed_at))
        for w in writes:
            if w.public is not None and w.view_changed:
                self.output.add(ORDER_STATE.name, *projection_record(self.codec, w.state))
        if self._flush_in_thread:
            await asyncio.to_thread(self.output.flush)
        else:
            self.output.flush()
        stats.orders_written = await self.store.save(writes)
        stats.dead_letters = len(dead)
        self.totals.add(stats)
        return stats

    def _fold_order(self, order_id: str, state: State | None, items: list[tuple[SourceRecord, Decoded]],
                    stats: BatchStats, dead: list[DeadLetter]) -> OrderWrite | None:
        step = fold_records(self.codec, state, items)
        stats.applied += step.applied
        stats.duplicates += step.duplicates
        stats.buffered += step.buffered
        dead.extend(step.dead_letters)
        if not step.changed or step.state is None:
            return None
        view = step.view
        return OrderWrite(order_id, step.state, public_view(view) if view is not None else None, step.view_changed)
