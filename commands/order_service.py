"""``OrderService``: the command side's application. A thin facade: load, decide, save.

Optimistic concurrency: an event is stored under (order, version). If another
writer (thread, process, machine) saved the same version first, our save fails
with the library's IntegrityError, nothing of our command is stored, and we
raise ``ConcurrentModification``. Every method returns the saved ``Order``.

Configuration is explicit: ``OrderService()`` reads ``config.settings`` when it
is constructed (never at import) and maps ``eventstore_url`` to the library's
settings; ``os.environ`` is not consulted by the library (see construct_env).

Personal data is sealed here, before the aggregate records anything: every field the
schemas mark personal (``privacy.fields``) is encrypted under its data subject's key
from ``keys`` (default: ``privacy.keystore.keystore_from_settings``). OrderCreated's
fields under ``customer:<customer_id>``, OrderDispatched's under ``driver:<driver_id>``,
OrderDelivered's receiver name under the order's customer. So the event store, the
relay's records and everything folded from them hold ciphertext only; a value that is
already sealed (a re-driven record) is kept as it is.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment, EnvType

from commands.avro_mapping import encode_checked, to_avro
from commands.errors import (
    ConcurrentModification,
    InvalidCommand,
    OrderAlreadyExists,
    OrderNotFound,
)
from commands.eventstore_config import eventstore_env, sqlite_path
from commands.order_aggregate import COMMANDS, DEFAULT_PRODUCER, Instant, Order, order_uuid
from config import settings as settings_mod
from privacy.fields import personal_fields, seal_record
from privacy.keystore import KeyStore, keystore_from_settings
from privacy.sealed import SealError
from projections.order_events import InvalidEvent
from projections.order_status import IllegalTransition, next_status
from schemas.codec import AvroCodec
from schemas.errors import CodecError

Line = Mapping[str, Any]
Point = Mapping[str, Any]


class OrderService(Application[UUID]):
    name = "OrderService"

    def __init__(self, env: Mapping[str, str] | None = None, *, codec: AvroCodec | None = None,
                 keys: KeyStore | None = None) -> None:
        """``env``: eventsourcing settings, e.g. ``eventstore_env("sqlite:///orders.sqlite")``;
        default: from ``config.settings.load().eventstore_url``. ``keys``: the key store personal
        data is sealed with; default: the configured one (``KUAILV_KEYSTORE``)."""
        if env is None or keys is None:
            settings = settings_mod.load()
            env = env if env is not None else eventstore_env(settings.eventstore_url)
            keys = keys if keys is not None else keystore_from_settings(settings)
        env = dict(env)
        _prepare_storage(env)
        super().__init__(env=env)
        self.codec = codec if codec is not None else AvroCodec()
        self.keys: KeyStore = keys

    @classmethod
    def from_url(cls, url: str, *, codec: AvroCodec | None = None, keys: KeyStore | None = None) -> OrderService:
        return cls(eventstore_env(url), codec=codec, keys=keys)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # The library would merge os.environ (including ORDERSERVICE_* overrides) here;
        # we take only the explicit env so configuration has one source: config.settings.
        return Environment(name, {**type(self).env, **(env or {})})

    # ------------------------------------------------------------------ queries

    def find(self, order_id: str) -> Order | None:
        try:
            order: Order = self.repository.get(order_uuid(order_id))
        except AggregateNotFoundError:
            return None
        return order

    def view(self, order_id: str) -> dict[str, Any] | None:
        """The order's state in the order-state projection's shape (times in ms)."""
        order = self.find(order_id)
        return None if order is None else order.view

    # ------------------------------------------------------------------ commands

    def execute(self, command: str, order_id: str, **kwargs: Any) -> Order:
        """Run a command by name (see ``order_aggregate.COMMANDS``)."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; known: {sorted(COMMANDS)}")
        method = getattr(self, command)
        result: Order = method(order_id, **kwargs)
        return result

    def create(self, order_id: str, *, at: Instant, customer_id: str, customer_name: str, customer_phone: str,
               warehouse_id: str, lines: Sequence[Line], delivery_window_start: Instant,
               delivery_window_end: Instant, delivery_address: Mapping[str, Any], remark: str | None = None,
               producer: str = DEFAULT_PRODUCER) -> Order:
        existing = self.find(order_id)
        if existing is not None:
            raise _already_exists(existing)
        personal = self._sealed("create", order_id, None, {
            "customer_id": customer_id, "customer_name": customer_name, "customer_phone": customer_phone,
            "delivery_address": delivery_address})
        order = Order.create(order_id, at=at, warehouse_id=warehouse_id, lines=lines,
                             delivery_window_start=delivery_window_start, delivery_window_end=delivery_window_end,
                             remark=remark, producer=producer, **personal)
        self._save(order, "create")
        return order

    def confirm_payment(self, order_id: str, *, at: Instant, payment_id: str, amount_cents: int, method: str,
                        producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "confirm_payment", at=at, payment_id=payment_id, amount_cents=amount_cents,
                         method=method, producer=producer)

    def check_stock(self, order_id: str, *, at: Instant, warehouse_id: str, lines: Sequence[Line],
                    producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "check_stock", at=at, warehouse_id=warehouse_id, lines=lines, producer=producer)

    def start_picking(self, order_id: str, *, at: Instant, warehouse_id: str, picker_id: str,
                      producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "start_picking", at=at, warehouse_id=warehouse_id, picker_id=picker_id,
                         producer=producer)

    def weigh_line(self, order_id: str, *, at: Instant, line_no: int, sku: str, scale_id: str,
                   picked_quantity: float, expected_kg: float, measured_kg: float,
                   producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "weigh_line", at=at, line_no=line_no, sku=sku, scale_id=scale_id,
                         picked_quantity=picked_quantity, expected_kg=expected_kg, measured_kg=measured_kg,
                         producer=producer)

    def pack(self, order_id: str, *, at: Instant, package_count: int, packer_id: str,
             producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "pack", at=at, package_count=package_count, packer_id=packer_id,
                         producer=producer)

    def dispatch(self, order_id: str, *, at: Instant, driver_id: str, driver_name: str, driver_phone: str,
                 vehicle_id: str, vehicle_plate: str, origin: Point, estimated_arrival: Instant | None = None,
                 producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "dispatch", at=at, driver_id=driver_id, driver_name=driver_name,
                         driver_phone=driver_phone, vehicle_id=vehicle_id, vehicle_plate=vehicle_plate,
                         origin=origin, estimated_arrival=estimated_arrival, producer=producer)

    def report_exception(self, order_id: str, *, at: Instant, reason_code: str, description: str, driver_id: str,
                         location: Point, producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "report_exception", at=at, reason_code=reason_code, description=description,
                         driver_id=driver_id, location=location, producer=producer)

    def deliver(self, order_id: str, *, at: Instant, receiver_name: str, signature_ref: str, location: Point,
                lines: Sequence[Line], photo_ref: str | None = None, producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "deliver", at=at, receiver_name=receiver_name, signature_ref=signature_ref,
                         location=location, lines=lines, photo_ref=photo_ref, producer=producer)

    def refuse(self, order_id: str, *, at: Instant, reason: str, location: Point,
               producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "refuse", at=at, reason=reason, location=location, producer=producer)

    def start_return(self, order_id: str, *, at: Instant, reason: str, lines: Sequence[Line],
                     producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "start_return", at=at, reason=reason, lines=lines, producer=producer)

    def complete_return(self, order_id: str, *, at: Instant, warehouse_id: str, restocked: bool,
                        producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "complete_return", at=at, warehouse_id=warehouse_id, restocked=restocked,
                         producer=producer)

    def open_claim(self, order_id: str, *, at: Instant, claim_id: str, description: str, lines: Sequence[Line],
                   claimed_cents: int, producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "open_claim", at=at, claim_id=claim_id, description=description, lines=lines,
                         claimed_cents=claimed_cents, producer=producer)

    def settle_claim(self, order_id: str, *, at: Instant, claim_id: str, settled_cents: int, resolution: str,
                     producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "settle_claim", at=at, claim_id=claim_id, settled_cents=settled_cents,
                         resolution=resolution, producer=producer)

    def cancel(self, order_id: str, *, at: Instant, reason: str, cancelled_by: str,
               producer: str = DEFAULT_PRODUCER) -> Order:
        return self._run(order_id, "cancel", at=at, reason=reason, cancelled_by=cancelled_by, producer=producer)

    # ------------------------------------------------------------------ load, decide, save

    def _run(self, order_id: str, command: str, **kwargs: Any) -> Order:
        order = self.find(order_id)
        if order is None:
            raise _not_found(order_id, command)
        getattr(order, command)(**self._sealed(command, order_id, order.view, kwargs))
        self._save(order, command)
        return order

    def _sealed(self, command: str, order_id: str, view: Mapping[str, Any] | None,
                fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with the command's personal data sealed under its subjects' keys (``privacy.fields``)."""
        record_type = COMMANDS[command]
        if not personal_fields(record_type):
            return fields
        try:
            return seal_record(record_type, fields, _subjects(view, fields), self.keys)
        except (SealError, ValueError) as exc:  # no subject id to seal under, a name that is not a string
            raise InvalidCommand(order_id, command, InvalidEvent(str(exc))) from exc

    def _save(self, order: Order, command: str) -> None:
        for event in order.pending_events:  # never store an event the relay could not publish
            record_type, record = to_avro(event)
            try:
                encode_checked(self.codec, record_type, record)
            except CodecError as exc:
                raise InvalidCommand(order.order_id, command, InvalidEvent(str(exc))) from exc
        try:
            self.save(order)
        except IntegrityError as exc:
            if command == "create":
                existing = self.find(order.order_id)
                if existing is not None:
                    raise _already_exists(existing) from exc
            raise ConcurrentModification(order.order_id, command) from exc


def _subjects(view: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, str]:
    """Whose personal data a command carries: the order's customer (from the aggregate's view, or the
    ``create`` command itself) and the command's driver (or the order's current one)."""
    customer = view["customer_id"] if view else fields.get("customer_id")
    driver = fields.get("driver_id") or ((view or {}).get("driver") or {}).get("driver_id")
    return {kind: ident for kind, ident in (("customer", customer), ("driver", driver))
            if isinstance(ident, str) and ident}


def _not_found(order_id: str, command: str) -> OrderNotFound:
    try:
        next_status(order_id, None, {}, COMMANDS[command], {})
    except IllegalTransition as exc:
        return OrderNotFound(command, exc)
    return OrderNotFound(command, IllegalTransition(order_id, None, COMMANDS[command], "order not found"))


def _already_exists(order: Order) -> OrderAlreadyExists:
    try:
        next_status(order.order_id, order.status, order.stages, "OrderCreated", {})
    except IllegalTransition as exc:
        return OrderAlreadyExists("create", exc)
    return OrderAlreadyExists("create", IllegalTransition(order.order_id, order.status, "OrderCreated",
                                                          "the order already exists"))


def _prepare_storage(env: Mapping[str, str]) -> None:
    path = sqlite_path(dict(env))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres" and importlib.util.find_spec("psycopg") is None:
        raise RuntimeError("PostgreSQL event store needs psycopg: pip install 'kuailv-pipeline[postgres]'")
