"""``OutboxRelay``: publish the event store's notification log to Kafka, at least once.

One pass (``run_once``):

1. read the position: the eventsourcing ``TrackingRecorder`` of the event
   store's own database (table ``tracking``, one row per relay name, holding
   the last notification id known to be on Kafka);
2. select the next notifications after it, map each to its Avro record
   (``avro_mapping.to_avro``) and produce it, keyed by order id, with an
   idempotent producer (acks=all, ordered retries);
3. ``flush()`` and check every delivery report;
4. only then record the new position.

A crash anywhere before step 4 loses nothing: the next pass re-sends the same
notifications, which carry the same ``event_id`` and ``version``, and the
stream fold drops them as duplicates. A failed delivery raises
``RelayDeliveryFailed`` and leaves the position where it was.

Notification ids are gap-free in commit order on both stores we support
(SQLite serialises writers; eventsourcing.postgres takes a table lock for
inserts), so "everything up to id N is published" is a sound position.
Two relays on the same store and name are safe but wasteful (duplicates).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, Notification, Tracking, TrackingRecorder

from commands.avro_mapping import encode_checked, to_avro
from commands.order_service import OrderService
from projections.timefmt import ms
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from streams.sinks.kafka_output import idempotent_producer_config

log = logging.getLogger(__name__)


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the relay uses."""

    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *args: Any,
                **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


ProducerFactory = Callable[[], ProducerLike]


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Idempotent, ordered, fully acknowledged producer settings (shared with every sink)."""
    return {**idempotent_producer_config(bootstrap, "kuailv-order-relay"), "message.timeout.ms": 120_000,
            **overrides}


def kafka_producer_factory(bootstrap: str, **overrides: Any) -> ProducerFactory:
    def make() -> ProducerLike:
        from confluent_kafka import Producer

        producer: ProducerLike = Producer(producer_config(bootstrap, **overrides))
        return producer

    return make


class RelayError(RuntimeError):
    """A pass failed; the tracking position was not advanced past ``notification_id``'s predecessor."""

    def __init__(self, message: str, *, notification_id: int | None = None, order_id: str | None = None,
                 topic: str | None = None) -> None:
        context = ", ".join(f"{k}={v}" for k, v in
                            (("notification", notification_id), ("order", order_id), ("topic", topic)) if v)
        super().__init__(f"{message} ({context})" if context else message)
        self.notification_id = notification_id
        self.order_id = order_id
        self.topic = topic


class RelayMappingFailed(RelayError):
    """A stored event could not be turned into a valid Avro record (a bug, not a transient error)."""


class RelayDeliveryFailed(RelayError):
    """Kafka did not acknowledge some records of a batch."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    notification_id: int
    order_id: str
    record_type: str
    version: int
    value: bytes
    timestamp_ms: int  # the event's time: the Kafka record timestamp (event time for Flink's watermarks)


class OutboxRelay:
    def __init__(self, app: OrderService, producer_factory: ProducerFactory, *, topic: str = ORDER_EVENTS.name,
                 codec: AvroCodec | None = None, tracking: TrackingRecorder | None = None,
                 name: str | None = None, flush_timeout: float = 60.0,
                 before_tracking: Callable[[int, int], None] | None = None) -> None:
        """``producer_factory`` is called lazily, and again after a failed batch (a fresh
        idempotent producer). ``tracking`` defaults to a TrackingRecorder on the app's own
        database. ``before_tracking(published, last_notification_id)`` runs after a
        successful flush and before the position is recorded (a test seam for crashes)."""
        self.app = app
        self.topic = topic
        self.codec = codec if codec is not None else app.codec
        self.tracking = tracking if tracking is not None else app.factory.tracking_recorder()
        self.name = name or f"{app.name}->{topic}"
        self.flush_timeout = flush_timeout
        self._producer_factory = producer_factory
        self._producer: ProducerLike | None = None
        self._before_tracking = before_tracking

    @property
    def position(self) -> int:
        """The last notification id known to be on Kafka (0: none)."""
        return self.tracking.max_tracking_id(self.name) or 0

    def run_once(self, limit: int = 1000) -> int:
        """Publish up to ``limit`` unpublished notifications; returns how many were published."""
        notifications = self.app.recorder.select_notifications(start=self.position, limit=limit,
                                                                inclusive_of_start=False)
        if not notifications:
            return 0
        batch, failure = self._encode(notifications)
        if batch:
            self._publish(batch)
            self._track(batch[-1].notification_id, len(batch))
        if failure is not None:
            raise failure
        return len(batch)

    def run_forever(self, poll_interval: float = 0.5, stop_event: threading.Event | None = None,
                    limit: int = 1000, max_backoff: float = 30.0) -> None:
        """Poll until ``stop_event`` is set. Errors are logged with their context and retried
        with exponential backoff (the position only moves after a successful flush)."""
        stop = stop_event or threading.Event()
        backoff = poll_interval
        while not stop.is_set():
            try:
                published = self.run_once(limit)
            except Exception:  # RelayError carries notification/order/topic; store errors are transient
                log.exception("order relay %s: pass failed; retrying in %.1fs", self.name, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            backoff = poll_interval
            if published < limit:
                stop.wait(poll_interval)
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.flush_timeout)
            self._producer = None

    # ------------------------------------------------------------------ steps

    def _encode(self, notifications: Sequence[Notification]) -> tuple[list[_Outgoing], RelayError | None]:
        """Map and encode in order; stop at the first bad event (what precedes it is still published)."""
        batch: list[_Outgoing] = []
        for n in notifications:
            order_id = None
            try:
                event = self.app.mapper.to_domain_event(n)
                order_id = getattr(event, "order_id", None)
                record_type, record = to_avro(event)  # type: ignore[arg-type]
                value = encode_checked(self.codec, record_type, record)
            except Exception as exc:  # mapping a stored event can fail in many ways; all are fatal here
                return batch, RelayMappingFailed(f"cannot publish stored event {n.topic} v{n.originator_version} "
                                                 f"of aggregate {n.originator_id}: {type(exc).__name__}: {exc}",
                                                 notification_id=n.id, order_id=order_id, topic=self.topic)
            batch.append(_Outgoing(n.id, record["order_id"], record_type, record["version"], value,
                                   ms(record["event_time"])))
        return batch, None

    def _publish(self, batch: list[_Outgoing]) -> None:
        failures: list[tuple[_Outgoing, Any]] = []

        def report(item: _Outgoing) -> Callable[[Any, Any], None]:
            def on_delivery(err: Any, _msg: Any) -> None:
                if err is not None:
                    failures.append((item, err))

            return on_delivery

        try:
            producer = self._get_producer()
            for item in batch:
                self._produce(producer, item, report(item))
            remaining = producer.flush(self.flush_timeout)
        except Exception as exc:  # KafkaException, BufferError that outlived retries, ...
            self._producer = None
            raise RelayDeliveryFailed(f"produce failed: {type(exc).__name__}: {exc}",
                                      notification_id=batch[0].notification_id, order_id=batch[0].order_id,
                                      topic=self.topic) from exc
        if failures or remaining:
            self._producer = None  # an idempotent producer may be unusable after a failure
            item, err = failures[0] if failures else (batch[-1], f"{remaining} record(s) still in flight")
            raise RelayDeliveryFailed(
                f"{len(failures)} of {len(batch)} record(s) not delivered, {remaining} not flushed within "
                f"{self.flush_timeout}s; first: {item.record_type} v{item.version}: {err}",
                notification_id=item.notification_id, order_id=item.order_id, topic=self.topic)

    def _produce(self, producer: ProducerLike, item: _Outgoing, on_delivery: Callable[[Any, Any], None]) -> None:
        for _ in range(100):
            try:
                producer.produce(self.topic, value=item.value, key=item.order_id.encode(), on_delivery=on_delivery,
                                 timestamp=item.timestamp_ms)
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        raise BufferError(f"producer queue stayed full for notification {item.notification_id}")

    def _track(self, notification_id: int, published: int) -> None:
        if self._before_tracking is not None:
            self._before_tracking(published, notification_id)
        try:
            self.tracking.insert_tracking(Tracking(self.name, notification_id))
        except IntegrityError:
            # Another relay with the same name already recorded this position or a later one.
            if self.position < notification_id:
                raise
            log.warning("order relay %s: position %d was already recorded by another relay", self.name,
                        notification_id)

    def _get_producer(self) -> ProducerLike:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

