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
from typing import Any, Protocol

from projections.order_state import FoldResult, Rejection, State, fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.order_view import public_view
from schemas.codec import AvroCodec, Decoded
from schemas.errors import CodecError
from schemas.topics import ORDER_STATE
from streams.batch_stats import BatchStats
from streams.dead_letters import DeadLetter
from streams.sinks.redis_orders import OrderStore, OrderWrite
from streams.source import SourceRecord

log = logging.getLogger(__name__)


class Output(Protocol):
    def add(self, topic: str, key: bytes, value: bytes) -> None: ...

    def flush(self) -> int: ...


def decode_order_record(codec: AvroCodec, rec: SourceRecord) -> Decoded | DeadLetter:
    """The decoded order event, or the dead letter saying why it is not one."""
    try:
        decoded = codec.decode(rec.value)
    except CodecError as exc:
        return DeadLetter(rec, exc.reason_code, str(exc), schema_id=exc.schema_id)
    value = decoded.value
    if decoded.record_type not in ORDER_EVENT_TYPES:
        return DeadLetter(rec, "UNEXPECTED_RECORD_TYPE", f"{decoded.record_type} does not belong on {rec.topic}",
                          value.get("event_id"), decoded.record_type, decoded.schema_id)
    key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
    if key != value["order_id"]:
        return DeadLetter(rec, "INVALID_EVENT",
                          f"message key {key!r} is not the order id {value['order_id']!r}: it would break per-order"
                          " ordering", value["event_id"], decoded.record_type, decoded.schema_id)
    return decoded


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
            if w.public is not None:
                self.output.add(ORDER_STATE.name, w.order_id.encode(), self.codec.encode("OrderState", w.state["view"]))
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
        changed = False
        for rec, decoded in items:
            before = state
            result: FoldResult = fold(state, decoded.record_type, decoded.value)
            state = result.state
            stats.applied += result.applied
            stats.duplicates += int(result.duplicate)
            stats.buffered += int(result.buffered)
            changed = changed or result.changed
            for rejection in result.rejections:
                dead.append(self._rejected(rec, decoded, rejection, before))
        if not changed or state is None:
            return None
        view = state["view"]
        return OrderWrite(order_id, state, public_view(view) if view is not None else None)

    def _rejected(self, rec: SourceRecord, decoded: Decoded, r: Rejection, before: State | None) -> DeadLetter:
        if r.event_id == decoded.value["event_id"]:
            return DeadLetter(rec, r.reason_code, r.reason, r.event_id, r.event_type, decoded.schema_id)
        # A buffered event from an earlier batch, refused when the gap closed: its own bytes
        # are gone, so re-encode it from the fold state that held it.
        held: dict[str, Any] = (before or {}).get("pending", {}).get(str(r.version), {})
        value = self.codec.encode(held["type"], held["event"]) if held else None
        source = SourceRecord(rec.topic, rec.partition, rec.offset, rec.key, value, rec.timestamp_ms)
        reason = f"{r.reason} (buffered event v{r.version}, refused when {rec.position} closed the gap)"
        return DeadLetter(source, r.reason_code, reason, r.event_id, r.event_type, None)
