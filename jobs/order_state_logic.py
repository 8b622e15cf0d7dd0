"""What the order-state Flink job does per record, without PyFlink.

* ``decode_row``: a raw Kafka record (topic, partition, offset, timestamp, key,
  value) becomes either a keyed order event or an output for the dead-letter
  topic — ``projections.order_step.decode_order_record``, the Faust decode.
* ``fold_event``: one order's keyed state + one event -> new state and the
  outputs (projection record on the compacted topic, dead letters) —
  ``projections.order_step.fold_records``, the Faust fold.

Outputs are ``(topic, key, value)`` byte triples for a topic-routing Kafka sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.order_state import State
from projections.order_step import decode_order_record, fold_records, projection_record
from projections.timefmt import ms
from schemas.codec import AvroCodec, Decoded
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import ORDER_STATE

Output = tuple[str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class KeyedEvent:
    """A decoded order event with its source position (what travels between operators)."""

    order_id: str
    event_time_ms: int
    record: SourceRecord
    record_type: str
    schema_id: int
    value: dict[str, Any]

    def decoded(self) -> Decoded:
        return Decoded(self.record_type, self.schema_id, self.value)


def source_record(topic: str, partition: int, offset: int, timestamp_ms: int | None, key: bytes | None,
                  value: bytes | None) -> SourceRecord:
    return SourceRecord(topic, int(partition), int(offset), as_bytes(key), as_bytes(value), timestamp_ms)


def as_bytes(b: Any) -> bytes | None:
    """PyFlink hands a Java byte[] over as bytes, bytearray or a list of signed ints (-128..127)."""
    if b is None or isinstance(b, bytes):
        return b
    if isinstance(b, bytearray):
        return bytes(b)
    return bytes(v & 0xFF for v in b)


def decode_row(codec: AvroCodec, rec: SourceRecord, consumer: str, failed_at_ms: int) -> KeyedEvent | Output:
    outcome = decode_order_record(codec, rec)
    if isinstance(outcome, DeadLetter):
        return outcome.encode(codec, consumer, failed_at_ms)
    v = outcome.value
    return KeyedEvent(v["order_id"], ms(v["event_time"]), rec, outcome.record_type, outcome.schema_id, v)


def fold_event(codec: AvroCodec, state: State | None, event: KeyedEvent, consumer: str,
               failed_at_ms: int) -> tuple[State | None, list[Output]]:
    """The new keyed state and what to emit: a projection record only when the view changed
    (a buffered early event changes the state, not what consumers see)."""
    step = fold_records(codec, state, [(event.record, event.decoded())])
    outputs: list[Output] = [d.encode(codec, consumer, failed_at_ms) for d in step.dead_letters]
    if step.view_changed and step.state is not None and step.view is not None:
        outputs.append((ORDER_STATE.name, *projection_record(codec, step.state)))
    return step.state, outputs
