"""The ``Order`` aggregate: commands are verbs, events are past tense.

Every command asks the shared state machine (``projections.order_status.next_status``)
and the shared data checks (``projections.order_events.validate``) before it
records anything, and every event updates the aggregate's state with the same
``apply_event`` the stream fold uses. The command side therefore holds no rules
of its own: it cannot accept what the projections would reject.

Each event records the decision it carries (``status``: the status after it),
so reloading an order never re-judges its history, even if the rules change.

Time is the caller's: every command takes ``at`` (epoch ms, or an aware
datetime), which becomes the event time. Nothing here reads the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from eventsourcing.domain import Aggregate

from commands.errors import CommandRejected, InvalidCommand
from projections.order_events import InvalidEvent, apply_event, validate
from projections.order_status import COMMAND_EVENTS, TRANSITIONS, IllegalTransition, OrderStatus, next_status
from projections.timefmt import ms

Instant = int | datetime
Payload = dict[str, Any]
# A personal field: sealed by OrderService before it reaches the aggregate (privacy.sealed); a plain
# string only when the aggregate is driven directly (tests) or from records written before sealing.
Personal = str | dict[str, Any]

DEFAULT_PRODUCER = "order-service"

# Fixed forever: aggregate ids are uuid5(ORDER_NAMESPACE, order_id).
ORDER_NAMESPACE = uuid.UUID("0f6c5b8e-5d0a-5c43-9c0e-6b75a1f0e001")

# Stored-event attributes that are not Avro payload fields.
ENVELOPE = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp",
                      "order_id", "producer", "status"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def order_uuid(order_id: str) -> uuid.UUID:
    """The aggregate id of an order id (deterministic)."""
    return uuid.uuid5(ORDER_NAMESPACE, order_id)


def to_datetime(epoch_ms: int) -> datetime:
    """Exact inverse of ``projections.timefmt.ms`` (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def plain(value: Any) -> Any:
    """A JSON-safe deep copy: datetimes -> epoch ms, enums -> their value, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return ms(value)
    if isinstance(value, Enum):
        return value.value
    return value


def order_total_cents(lines: Sequence[Mapping[str, Any]]) -> int:
    return round(sum(line["quantity"] * line["unit_price_cents"] for line in lines))


class Order(Aggregate):
    """One customer order. Build with ``Order.create(...)``; never construct directly."""

    TOPIC = "kuailv.commands.Order"

    class Event(Aggregate.Event):
        order_id: str
        producer: str
        status: str  # the order's status after this event, as decided by next_status

        def apply(self, aggregate: Any) -> None:
            aggregate._apply_recorded(self)

        def payload(self) -> Payload:
            """The Avro payload fields of this event (no envelope)."""
            return {k: v for k, v in vars(self).items() if k not in ENVELOPE}

    class Created(Event, Aggregate.Created):
        TOPIC = "kuailv.commands.Order.Created"
        customer_id: str
        customer_name: Personal
        customer_phone: Personal
        warehouse_id: str
        lines: list[dict[str, Any]]
        delivery_window_start: int
        delivery_window_end: int
        delivery_address: dict[str, Any]
        total_cents: int
        remark: str | None

    class PaymentConfirmed(Event):
        TOPIC = "kuailv.commands.Order.PaymentConfirmed"
        payment_id: str
        amount_cents: int
        method: str

    class StockChecked(Event):
        TOPIC = "kuailv.commands.Order.StockChecked"
        warehouse_id: str
        lines: list[dict[str, Any]]

    class PickingStarted(Event):
        TOPIC = "kuailv.commands.Order.PickingStarted"
        warehouse_id: str
        picker_id: str

    class LineWeighed(Event):
        TOPIC = "kuailv.commands.Order.LineWeighed"
        line_no: int
        sku: str
        scale_id: str
        picked_quantity: float
        expected_kg: float
        measured_kg: float

    class Packed(Event):
        TOPIC = "kuailv.commands.Order.Packed"
        package_count: int
        packer_id: str

    class Dispatched(Event):
        TOPIC = "kuailv.commands.Order.Dispatched"
        driver_id: str
        driver_name: Personal
        driver_phone: Personal
        vehicle_id: str
        vehicle_plate: str
        origin: dict[str, Any]
        estimated_arrival: int | None

    class ExceptionReported(Event):
        TOPIC = "kuailv.commands.Order.ExceptionReported"
        reason_code: str
        description: str
        driver_id: str
        location: dict[str, Any]

    class Delivered(Event):
        TOPIC = "kuailv.commands.Order.Delivered"
        receiver_name: Personal
        signature_ref: str
        photo_ref: str | None
        location: dict[str, Any]
        lines: list[dict[str, Any]]

    class DeliveryRefused(Event):
        TOPIC = "kuailv.commands.Order.DeliveryRefused"
        reason: str
        location: dict[str, Any]

    class ReturnStarted(Event):
        TOPIC = "kuailv.commands.Order.ReturnStarted"
        reason: str
        lines: list[dict[str, Any]]

    class ReturnCompleted(Event):
        TOPIC = "kuailv.commands.Order.ReturnCompleted"
        warehouse_id: str
        restocked: bool

    class DamageClaimOpened(Event):
        TOPIC = "kuailv.commands.Order.DamageClaimOpened"
        claim_id: str
        description: str
        lines: list[dict[str, Any]]
        claimed_cents: int

    class DamageClaimSettled(Event):
        TOPIC = "kuailv.commands.Order.DamageClaimSettled"
        claim_id: str
        settled_cents: int
        resolution: str

    class Cancelled(Event):
        TOPIC = "kuailv.commands.Order.Cancelled"
        reason: str
        cancelled_by: str

    # ------------------------------------------------------------------ state

    def _apply_recorded(self, event: Order.Event) -> None:
        """Evolve the state with the stream fold's own ``apply_event``."""
        record_type = RECORD_TYPES[type(event).__name__]
        if record_type == "OrderCreated":
            self.order_id: str = event.order_id
            self.view: dict[str, Any] | None = None
        record = {**event.payload(), "order_id": event.order_id, "version": event.originator_version,
                  "event_time": ms(event.timestamp)}
        self.view = apply_event(self.view, record_type, record, event.status, TRANSITIONS[record_type].stage)
        self.status: OrderStatus = OrderStatus(event.status)

    @property
    def stages(self) -> dict[str, int]:
        """Stage name -> event time (ms) of every stage reached."""
        return dict(self.view["stages"]) if self.view else {}

    @staticmethod
    def create_id(order_id: str) -> uuid.UUID:
        return order_uuid(order_id)

    # ------------------------------------------------------------------ decisions

    @staticmethod
    def decide(command: str, order_id: str, status: OrderStatus | None, view: Mapping[str, Any] | None,
               record_type: str, payload: Mapping[str, Any]) -> OrderStatus:
        """The shared state machine and data checks, with errors naming the command."""
        try:
            target = next_status(order_id, status, view["stages"] if view else {}, record_type, payload)
            validate(record_type, payload, dict(view) if view else None)
        except IllegalTransition as exc:
            raise CommandRejected(command, exc) from exc
        except InvalidEvent as exc:
            raise InvalidCommand(order_id, command, exc) from exc
        except (KeyError, TypeError, ValueError) as exc:
            cause = InvalidEvent(f"malformed {record_type} data: {type(exc).__name__}: {exc}")
            raise InvalidCommand(order_id, command, cause) from exc
        return target

    def _record(self, command: str, event_class: type[Order.Event], at: Instant, producer: str,
                **fields: Any) -> None:
        payload = plain(fields)
        record_type = RECORD_TYPES[event_class.__name__]
        status = self.decide(command, self.order_id, self.status, self.view, record_type, payload)
        self.trigger_event(event_class, timestamp=to_datetime(ms(at)), order_id=self.order_id,
                           producer=producer, status=status.value, **payload)

    # ------------------------------------------------------------------ commands

    @classmethod
    def create(cls, order_id: str, *, at: Instant, customer_id: str, customer_name: Personal, customer_phone: Personal,
               warehouse_id: str, lines: Sequence[Mapping[str, Any]], delivery_window_start: Instant,
               delivery_window_end: Instant, delivery_address: Mapping[str, Any], remark: str | None = None,
               producer: str = DEFAULT_PRODUCER) -> Order:
        payload = plain({
            "customer_id": customer_id, "customer_name": customer_name, "customer_phone": customer_phone,
            "warehouse_id": warehouse_id, "lines": lines, "delivery_window_start": delivery_window_start,
            "delivery_window_end": delivery_window_end, "delivery_address": delivery_address, "remark": remark,
        })
        status = cls.decide("create", order_id, None, None, "OrderCreated", payload)
        return cls._create(cls.Created, id=order_uuid(order_id), timestamp=to_datetime(ms(at)),
                           order_id=order_id, producer=producer, status=status.value,
                           total_cents=order_total_cents(payload["lines"]), **payload)

    def confirm_payment(self, *, at: Instant, payment_id: str, amount_cents: int, method: str,
                        producer: str = DEFAULT_PRODUCER) -> None:
        self._record("confirm_payment", self.PaymentConfirmed, at, producer,
                     payment_id=payment_id, amount_cents=amount_cents, method=method)

    def check_stock(self, *, at: Instant, warehouse_id: str, lines: Sequence[Mapping[str, Any]],
                    producer: str = DEFAULT_PRODUCER) -> None:
        """``lines``: one StockLine per order line (line_no, sku, requested, available, status OK|SHORT)."""
        self._record("check_stock", self.StockChecked, at, producer, warehouse_id=warehouse_id, lines=lines)

    def start_picking(self, *, at: Instant, warehouse_id: str, picker_id: str,
                      producer: str = DEFAULT_PRODUCER) -> None:
        self._record("start_picking", self.PickingStarted, at, producer, warehouse_id=warehouse_id,
                     picker_id=picker_id)

    def weigh_line(self, *, at: Instant, line_no: int, sku: str, scale_id: str, picked_quantity: float,
                   expected_kg: float, measured_kg: float, producer: str = DEFAULT_PRODUCER) -> None:
        self._record("weigh_line", self.LineWeighed, at, producer, line_no=line_no, sku=sku, scale_id=scale_id,
                     picked_quantity=picked_quantity, expected_kg=expected_kg, measured_kg=measured_kg)

    def pack(self, *, at: Instant, package_count: int, packer_id: str, producer: str = DEFAULT_PRODUCER) -> None:
        self._record("pack", self.Packed, at, producer, package_count=package_count, packer_id=packer_id)

    def dispatch(self, *, at: Instant, driver_id: str, driver_name: Personal, driver_phone: Personal, vehicle_id: str,
                 vehicle_plate: str, origin: Mapping[str, Any], estimated_arrival: Instant | None = None,
                 producer: str = DEFAULT_PRODUCER) -> None:
        self._record("dispatch", self.Dispatched, at, producer, driver_id=driver_id, driver_name=driver_name,
                     driver_phone=driver_phone, vehicle_id=vehicle_id, vehicle_plate=vehicle_plate, origin=origin,
                     estimated_arrival=estimated_arrival)

    def report_exception(self, *, at: Instant, reason_code: str, description: str, driver_id: str,
                         location: Mapping[str, Any], producer: str = DEFAULT_PRODUCER) -> None:
        self._record("report_exception", self.ExceptionReported, at, producer, reason_code=reason_code,
                     description=description, driver_id=driver_id, location=location)

    def deliver(self, *, at: Instant, receiver_name: Personal, signature_ref: str, location: Mapping[str, Any],
                lines: Sequence[Mapping[str, Any]], photo_ref: str | None = None,
                producer: str = DEFAULT_PRODUCER) -> None:
        self._record("deliver", self.Delivered, at, producer, receiver_name=receiver_name,
                     signature_ref=signature_ref, photo_ref=photo_ref, location=location, lines=lines)

    def refuse(self, *, at: Instant, reason: str, location: Mapping[str, Any],
               producer: str = DEFAULT_PRODUCER) -> None:
        self._record("refuse", self.DeliveryRefused, at, producer, reason=reason, location=location)

    def start_return(self, *, at: Instant, reason: str, lines: Sequence[Mapping[str, Any]],
                     producer: str = DEFAULT_PRODUCER) -> None:
        self._record("start_return", self.ReturnStarted, at, producer, reason=reason, lines=lines)

    def complete_return(self, *, at: Instant, warehouse_id: str, restocked: bool,
                        producer: str = DEFAULT_PRODUCER) -> None:
        self._record("complete_return", self.ReturnCompleted, at, producer, warehouse_id=warehouse_id,
                     restocked=restocked)

    def open_claim(self, *, at: Instant, claim_id: str, description: str, lines: Sequence[Mapping[str, Any]],
                   claimed_cents: int, producer: str = DEFAULT_PRODUCER) -> None:
        self._record("open_claim", self.DamageClaimOpened, at, producer, claim_id=claim_id,
                     description=description, lines=lines, claimed_cents=claimed_cents)

    def settle_claim(self, *, at: Instant, claim_id: str, settled_cents: int, resolution: str,
                     producer: str = DEFAULT_PRODUCER) -> None:
        self._record("settle_claim", self.DamageClaimSettled, at, producer, claim_id=claim_id,
                     settled_cents=settled_cents, resolution=resolution)

    def cancel(self, *, at: Instant, reason: str, cancelled_by: str, producer: str = DEFAULT_PRODUCER) -> None:
        self._record("cancel", self.Cancelled, at, producer, reason=reason, cancelled_by=cancelled_by)


# Event class name -> Avro record type (the short schema name).
RECORD_TYPES: dict[str, str] = {
    "Created": "OrderCreated",
    "PaymentConfirmed": "PaymentConfirmed",
    "StockChecked": "StockChecked",
    "PickingStarted": "PickingStarted",
    "LineWeighed": "LineWeighed",
    "Packed": "OrderPacked",
    "Dispatched": "OrderDispatched",
    "ExceptionReported": "ExceptionReported",
    "Delivered": "OrderDelivered",
    "DeliveryRefused": "DeliveryRefused",
    "ReturnStarted": "ReturnStarted",
    "ReturnCompleted": "ReturnCompleted",
    "DamageClaimOpened": "DamageClaimOpened",
    "DamageClaimSettled": "DamageClaimSettled",
    "Cancelled": "OrderCancelled",
}

# Command (method name) -> the Avro record type it records: one table, in projections.
COMMANDS = COMMAND_EVENTS

EVENT_CLASSES: dict[str, type[Order.Event]] = {
    record_type: getattr(Order, name) for name, record_type in RECORD_TYPES.items()
}
