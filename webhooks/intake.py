"""The delivery worker's consuming side: alert and order-state records -> rows in the delivery outbox.

An agent of the worker's batch loop (``streams.runtime.batch_loop``, docs/hot-path.md) in its own consumer
group ``<KUAILV_CONSUMER_GROUP>-webhooks``: ``process`` decodes a batch and matches every record against the
subscriptions (active and paused; re-read at most every ``refresh_s``); ``write`` inserts the due deliveries
into the outbox, and only then does the loop commit the batch's offsets. A crash before the insert
re-reads the batch; a crash after it re-reads it too and inserts nothing new (the delivery id is derived
from subscription and source position, and the outbox refuses a known id): no delivery is lost, none gets a
second id. Records that do not decode go to ``kuailv.dead-letters.v1`` like every worker's.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence

from projections.keyed_batch import Counts, decode_as, processing_error
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import ALERTS, ORDER_STATE
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.keyed_states import parked
from streams.sinks.kafka_output import Output
from webhooks.events import WebhookEvent, body, event_of, matches
from webhooks.signing import delivery_id
from webhooks.store import NewDelivery, WebhookStore
from webhooks.subscriptions import Subscription

log = logging.getLogger(__name__)


def deliveries_of(rec: SourceRecord, event: WebhookEvent, subs: Sequence[Subscription]) -> list[NewDelivery]:
    """One delivery per matching subscription (the body depends only on the subscriber's role)."""
    out = []
    bodies: dict[str | None, bytes] = {}
    for sub in subs:
        if not matches(sub.filters, event):
            continue
        role = sub.filters.role
        if role not in bodies:
            bodies[role] = body(event, role)
        out.append(NewDelivery(delivery_id(sub.id, rec.topic, rec.partition, rec.offset), sub.id, event.dedupe_key,
                               event.order_key, event.type, rec.topic, rec.partition, rec.offset, bodies[role]))
    return out


class WebhookIntake:
    name = "webhooks"
    topics = (ALERTS.name, ORDER_STATE.name)
    group_suffix = "-webhooks"

    def __init__(self, codec: AvroCodec, store: WebhookStore, output: Output, *, consumer: str,
                 wall_clock_ms: Callable[[], int], refresh_s: float = 1.0,
                 on_enqueued: Callable[[], None] | None = None) -> None:
        self.codec = codec
        self.store = store
        self.output = output
        self.consumer = consumer
        self._now = wall_clock_ms
        self.refresh_s = refresh_s
        self.on_enqueued = on_enqueued
        self._subs: list[Subscription] = []
        self._loaded_at: float | None = None

    def subscriptions(self) -> list[Subscription]:
        """The subscriptions records can match (not disabled), re-read at most every ``refresh_s``."""
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
            self._subs = self.store.subscriptions(states=("active", "paused"))
            self._loaded_at = now
        return self._subs

    def process(self, records: list[SourceRecord]) -> Staged:
        subs = self.subscriptions()
        rows: list[NewDelivery] = []
        dead: list[DeadLetter] = []
        for rec in records:
            decoded = decode_as(self.codec, rec, ("Alert", "OrderState"))
            if type(decoded) is DeadLetter:
                dead.append(decoded)
                continue
            try:
                rows += deliveries_of(rec, event_of(decoded.record_type, decoded.value), subs)
            except Exception as exc:  # a record our code cannot read is data, not a crash
                dead.append(processing_error(rec, f"{type(exc).__name__}: {exc} | "
                                                  f"{traceback.format_exc(limit=2).splitlines()[-1]}", decoded))
        failed_at = self._now()
        kafka = [d.encode(self.codec, self.consumer, failed_at) for d in dead]
        for d in dead:
            log.warning("dead letter: %s", d, extra={"topic": d.source.topic, "partition": d.source.partition,
                                                      "offset": d.source.offset, "reason_code": d.reason_code})
        return Staged(records, kafka, rows, Counts(records=len(records), applied=len(rows), dead_letters=len(dead)))

    def write(self, staged: Staged) -> None:
        for record in staged.kafka:
            self.output.add(*record)
        self.output.flush()
        rows: list[NewDelivery] = staged.payload
        if not rows:
            return
        inserted = self.store.enqueue(rows, self._now())
        for r in rows:
            log.debug("delivery enqueued", extra={"subscription_id": r.subscription_id, "delivery_id": r.delivery_id,
                                                  "topic": r.source_topic, "partition": r.source_partition,
                                                  "offset": r.source_offset, "event_type": r.event_type})
        log.info("batch %s: %d deliveries matched, %d new in the outbox", staged.span, len(rows), inserted,
                 extra={"matched": len(rows), "inserted": inserted})
        if inserted and self.on_enqueued is not None:
            self.on_enqueued()

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        return parked(records, reason, self.codec, self.consumer, self._now(), [])

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        """Nothing is cached per partition (the outbox is the state)."""

    def close(self) -> None:
        pass
