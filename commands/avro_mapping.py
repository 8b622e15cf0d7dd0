"""Recorded ``Order`` events <-> Avro order-event records. Pure functions.

``to_avro(event)`` gives ``(record_type, record)`` exactly as the schemas in
``schemas/avro/events`` define it. The envelope comes from the stored event:

* ``event_id`` = uuid5(originator id, version): unique (the event store's key
  is (originator id, version)) and stable, so a re-send after a relay crash
  carries the same id and the stream fold sees a duplicate, not a conflict;
* ``order_id`` = the order id stored on every event;
* ``version`` = the aggregate version after the event (1 for OrderCreated);
* ``event_time`` = the command's ``at`` in epoch ms; ``producer`` as given.

Personal fields are carried as recorded: the sealed dicts ``OrderService`` stored
(the ``kuailv.privacy.Sealed`` branch of their ``string | Sealed`` union), never
opened here; ``to_command`` hands them back sealed, and the service keeps them so.

``to_command(record_type, record)`` is the inverse: the command (and its
keyword arguments) that records an event with this payload. The simulator's
event builders drive the command side through it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from fastavro.validation import ValidationError, validate

from commands.order_aggregate import COMMANDS, RECORD_TYPES, Order, order_uuid, plain
from projections.timefmt import jsonable, ms
from schemas.codec import AvroCodec
from schemas.errors import EncodeFailed

# Fixed forever: event ids are uuid5(EVENT_NAMESPACE, f"{aggregate id}:{version}").
EVENT_NAMESPACE = uuid.UUID("0f6c5b8e-5d0a-5c43-9c0e-6b75a1f0e002")

ENVELOPE_FIELDS = ("event_id", "order_id", "version", "event_time", "producer")

AvroRecord = tuple[str, dict[str, Any]]

_MISSING = object()
_COMMAND_OF_RECORD = {record_type: command for command, record_type in COMMANDS.items()}


class MappingError(ValueError):
    """A stored event that cannot become an Avro order event."""


def event_id(aggregate_id: uuid.UUID, version: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{aggregate_id}:{version}"))


def to_avro(event: Order.Event) -> AvroRecord:
    """``(record_type, record)`` for a recorded (or just triggered) Order event."""
    name = type(event).__name__
    record_type = RECORD_TYPES.get(name)
    if record_type is None or not isinstance(event, Order.Event):
        raise MappingError(f"{type(event).__qualname__} is not an Order event")
    if order_uuid(event.order_id) != event.originator_id:
        raise MappingError(f"{record_type} v{event.originator_version}: aggregate id {event.originator_id} "
                           f"does not belong to order {event.order_id!r}")
    record = {
        "event_id": event_id(event.originator_id, event.originator_version),
        "order_id": event.order_id,
        "version": event.originator_version,
        "event_time": ms(event.timestamp),
        "producer": event.producer,
        **plain(event.payload()),
    }
    return record_type, record


def encode_checked(codec: AvroCodec, record_type: str, record: dict[str, Any]) -> bytes:
    """Encode, refusing anything the Avro bytes would not carry faithfully: fastavro's writer
    truncates 1.5 into a long and drops fields the schema lacks (at any depth), and its
    validator does not flag those extra fields, so the encoded record is decoded and compared."""
    entry = codec.catalog.latest(record_type)
    try:
        validate(record, entry.parsed, raise_errors=True)
    except ValidationError as exc:
        raise EncodeFailed(f"{entry.name} record does not match schema id {entry.id}: {exc}",
                           schema_id=entry.id) from exc
    data = codec.encode(record_type, record)
    back = jsonable(codec.decode(data).value)
    if back != record:
        diff = sorted(k for k in set(record) | set(back) if record.get(k, _MISSING) != back.get(k, _MISSING))
        raise EncodeFailed(f"{entry.name} record does not survive an Avro round trip (schema id {entry.id}); "
                           f"fields that differ: {diff}", schema_id=entry.id)
    return data


def to_command(record_type: str, record: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(command, order_id, kwargs)`` that records ``record``'s payload at its event time.

    ``event_id`` and ``version`` are not inputs of a command (the store assigns
    them); ``total_cents`` of OrderCreated is computed from the lines.
    """
    command = _COMMAND_OF_RECORD.get(record_type)
    if command is None:
        raise MappingError(f"{record_type!r} is not an order event type")
    kwargs = {k: v for k, v in record.items() if k not in ENVELOPE_FIELDS}
    if record_type == "OrderCreated":
        kwargs.pop("total_cents", None)
    kwargs["at"] = record["event_time"]
    kwargs["producer"] = record["producer"]
    return command, record["order_id"], kwargs
