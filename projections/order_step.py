"""One engine-neutral step of the order-state projection: raw Kafka records of
one order in, new fold state, outputs and dead letters out.

The worker (``streams.order_agent``), the Flink job (``jobs.order_state_job``) and
replay all call ``OrderProjection`` (through ``projections.keyed_batch``), so the
engines cannot disagree about what a record means. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.fleet import redispatch_request
from projections.keyed_batch import Folded, Keyed
from projections.order_state import FoldResult, Rejection, State, fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.van_orders import van_order_records
from schemas.codec import AvroCodec, Decoded
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.errors import CodecError
from schemas.fieldwise_encoder import Encoded, FieldwiseEncoder
from schemas.topics import FLEET, VAN_ORDERS


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


@dataclass
class OrderStep:
    state: State | None
    changed: bool = False  # fold state changed (persist it)
    view_changed: bool = False  # the visible projection changed (publish it)
    applied: int = 0
    duplicates: int = 0
    buffered: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # derived records, in version order: ("VanOrder", projections.van_orders record) and
    # ("RedispatchRequest", projections.fleet.redispatch_request)
    derived: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def view(self) -> dict[str, Any] | None:
        return None if self.state is None else self.state["view"]


def fold_records(codec: AvroCodec, state: State | None,
                 items: Sequence[tuple[SourceRecord, Decoded]]) -> OrderStep:
    """Fold one order's decoded records (in arrival order) into its state."""
    step = OrderStep(state)
    initial_view = None if state is None else state["view"]
    for rec, decoded in items:
        before = step.state
        result: FoldResult = fold(before, decoded.record_type, decoded.value, trace=True)
        previous = None if before is None else before["view"]
        for view in result.views:  # every applied version, so no move between vans is coalesced away
            step.derived += [("VanOrder", v) for v in van_order_records(previous, view)]
            request = redispatch_request(previous, view)
            if request is not None:
                step.derived.append(("RedispatchRequest", request))
            previous = view
        step.state = result.state
        step.applied += result.applied
        step.duplicates += int(result.duplicate)
        step.buffered += int(result.buffered)
        step.changed = step.changed or result.changed
        step.dead_letters.extend(_rejected(codec, rec, decoded, r, before) for r in result.rejections)
    # The fold replaces the view object exactly when an event applied or a rejection was counted;
    # buffering, duplicates and conflicts leave it as it was.
    step.view_changed = step.view is not initial_view
    return step


# where the order projection's derived records go: record type -> (topic, key field, event-time field)
DERIVED = {"VanOrder": (VAN_ORDERS.name, "driver_id", "event_time"),
           "RedispatchRequest": (FLEET.name, "order_id", "requested_at")}


def derived_records(codec: AvroCodec, outputs: Sequence[tuple[str, dict[str, Any]]]
                    ) -> list[tuple[str, bytes, bytes, int]]:
    """``(topic, key, value, event time)`` of an order's derived records (``Folded.outputs``), in order."""
    out = []
    for record_type, value in outputs:
        topic, key_field, time_field = DERIVED[record_type]
        out.append((topic, value[key_field].encode(), codec.encode(record_type, value), value[time_field]))
    return out


def projection_record(codec: AvroCodec, state: State) -> tuple[bytes, bytes]:
    """Key and value of the compacted order-state topic for ``state`` (which has a view)."""
    return state["order_id"].encode(), codec.encode("OrderState", state["view"])


class OrderProjection:
    """The order-state projection as a ``projections.keyed_batch.KeyedProjection``."""

    name = "order-state"

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self.views = FieldwiseEncoder(codec, "OrderState")

    def decode(self, rec: SourceRecord) -> Keyed[Decoded] | DeadLetter:
        out = decode_order_record(self.codec, rec)
        return out if type(out) is DeadLetter else Keyed(out.value["order_id"], out)  # type: ignore[union-attr]

    def fold(self, key: str, state: State | None, items: Sequence[tuple[SourceRecord, Decoded]]) -> Folded[State]:
        step = fold_records(self.codec, state, items)
        return Folded(step.state, changed=step.changed and step.state is not None,
                      published=step.view_changed and step.view is not None, dead_letters=step.dead_letters,
                      applied=step.applied, duplicates=step.duplicates, buffered=step.buffered,
                      outputs=step.derived)

    def encode_view(self, state: State, previous: Encoded | None = None) -> Encoded:
        """The projection record's value (framed ``OrderState``), re-using ``previous``'s unchanged bytes."""
        return self.views.encode(state["view"], previous)


def bookkeeping(state: State) -> dict[str, Any]:
    """The fold state without its view: what a store keeps next to the encoded view."""
    return {k: v for k, v in state.items() if k != "view"}


def with_view(book: dict[str, Any], view: dict[str, Any] | None) -> State:
    """The fold state back from its bookkeeping and its view (decoded with ``epoch_ms=True``)."""
    return {**book, "view": view}


def _rejected(codec: AvroCodec, rec: SourceRecord, decoded: Decoded, r: Rejection,
              before: State | None) -> DeadLetter:
    if r.event_id == decoded.value["event_id"]:
        return DeadLetter(rec, r.reason_code, r.reason, r.event_id, r.event_type, decoded.schema_id)
    # A buffered event from an earlier batch, refused when the gap closed: its own bytes
    # are gone, so re-encode it from the fold state that held it.
    held: dict[str, Any] = (before or {}).get("pending", {}).get(str(r.version), {})
    value = codec.encode(held["type"], held["event"]) if held else None
    source = SourceRecord(rec.topic, rec.partition, rec.offset, rec.key, value, rec.timestamp_ms)
    reason = f"{r.reason} (buffered event v{r.version}, refused when {rec.position} closed the gap)"
    return DeadLetter(source, r.reason_code, reason, r.event_id, r.event_type, None)
