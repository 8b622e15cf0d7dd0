"""Fold history through the same code as the live worker.

Sources: a JSON-lines file (``{"event_type": "OrderCreated", "event": {...}}``,
the event in the Avro JSON encoding of its schema) or the order-event topic
read from the beginning to its current end. Output: public order views.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from projections.order_state import Rejection, State, fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.order_step import decode_order_record
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter
from schemas.errors import CodecError
from streams.source import SourceRecord, from_confluent


@dataclass
class ReplayResult:
    states: dict[str, State] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    events: int = 0

    def add(self, event_type: str, event: dict[str, Any]) -> None:
        self.events += 1
        oid = event["order_id"]
        result = fold(self.states.get(oid), event_type, event)
        self.states[oid] = result.state
        self.rejections.extend(result.rejections)

    def views(self) -> Iterator[dict[str, Any]]:
        for oid in sorted(self.states):
            view = self.states[oid]["view"]
            if view is not None:
                yield public_view(view)


def replay_lines(lines: Iterable[str], codec: AvroCodec, source: str = "<file>") -> ReplayResult:
    result = ReplayResult()
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            event_type = obj["event_type"]
            if event_type not in ORDER_EVENT_TYPES:
                raise ValueError(f"{event_type!r} is not an order event type")
            event = codec.from_avro_json(event_type, obj["event"])
        except (ValueError, KeyError, TypeError, CodecError) as exc:
            result.dead_letters.append(f"{source}:{n}: {type(exc).__name__}: {exc}")
            continue
        result.add(event_type, event)
    return result


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Iterator[SourceRecord]:
    """Every record of ``topic`` from the beginning to the end it has now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"kuailv-replay-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if meta.topics[topic].error is not None:
            raise KafkaException(meta.topics[topic].error)
        ends: dict[int, int] = {}
        assign = []
        for p in sorted(meta.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        consumer.assign(assign)
        idle = 0.0
        while ends:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1.0
                if idle > timeout_s:
                    raise TimeoutError(f"no records from {topic} for {timeout_s}s; still waiting on {sorted(ends)}")
                continue
            idle = 0.0
            if msg.error():
                raise KafkaException(msg.error())
            yield from_confluent(msg)
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()


def replay_records(records: Iterable[SourceRecord], codec: AvroCodec) -> ReplayResult:
    result = ReplayResult()
    for rec in records:
        outcome = decode_order_record(codec, rec)
        if isinstance(outcome, DeadLetter):
            result.dead_letters.append(str(outcome))
            continue
        result.add(outcome.record_type, outcome.value)
    return result


def export_lines(records: Iterable[SourceRecord], codec: AvroCodec, out: TextIO) -> int:
    """Write order events as replay JSON lines (undecodable records are skipped)."""
    n = 0
    for rec in records:
        outcome = decode_order_record(codec, rec)
        if isinstance(outcome, DeadLetter):
            continue
        avro_json = codec.to_avro_json(outcome.record_type, outcome.value)
        out.write(json.dumps({"event_type": outcome.record_type, "event": avro_json}, ensure_ascii=False) + "\n")
        n += 1
    return n
