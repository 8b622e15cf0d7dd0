"""Fold history through the same code as the live worker.

Sources:

* the order-event topic, read from the beginning to its current end (``read_topic``,
  ``read_topic_batches``);
* a **record log** file (``.avro``, what ``kuailv export`` writes by default): an Avro object
  container file of ``kuailv.log.KafkaRecordBatch`` data, the consumed records byte for byte
  with their topic, partition, offset, timestamp and key, a partition's records per datum.
  Replaying it runs exactly the topic path (same decode, same dead letters with positions);
  parallel replay (``streams.replay_parallel``) shares it out by partition;
* a JSON-lines file (``{"event_type": "OrderCreated", "event": {...}}``, the event in the
  Avro JSON encoding of its schema): for people and hand-made fixtures; slower, and bad
  lines are reported as ``file:line``.

Both record paths fold with ``projections.keyed_batch.fold_batch`` + ``OrderProjection``,
the worker's step, in chunks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import fastavro
import orjson

from config.kafka_client import client_config
from projections.keyed_batch import Counts, fold_batch
from projections.order_state import Rejection, State, fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.order_step import OrderProjection, decode_order_record
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter
from schemas.errors import CodecError
from streams.source import SourceRecord, from_confluent

CHUNK = 5000  # records folded per fold_batch call

# The record-log datum: up to BLOCK_RECORDS consumed records of ONE partition, unchanged, in
# columns (a block of the container file decodes in one call, not one call per record).
RECORD_BATCH_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "KafkaRecordBatch", "namespace": "kuailv.log",
    "doc": "Consumed Kafka records of one partition, in offset order: positions, timestamps, keys and values "
           "(Confluent-framed Avro) byte for byte. A null key/value is listed by index in null_keys/null_values.",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "offsets", "type": {"type": "array", "items": "long"}},
        {"name": "timestamps", "type": {"type": "array", "items": "long"}, "doc": "-1: none"},
        {"name": "keys", "type": {"type": "array", "items": "bytes"}},
        {"name": "values", "type": {"type": "array", "items": "bytes"}},
        {"name": "null_keys", "type": {"type": "array", "items": "int"}, "default": []},
        {"name": "null_values", "type": {"type": "array", "items": "int"}, "default": []},
    ],
})
BLOCK_RECORDS = 2000


@dataclass
class ReplayResult:
    states: dict[str, State] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)  # JSON-lines path
    dead_letters: list[str] = field(default_factory=list)
    events: int = 0
    counts: Counts = field(default_factory=Counts)

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


class SpillingStates:
    """Every order's fold state, the recently used ones as objects and the rest as compact JSON.

    A fold state is ~6 KiB of Python objects but ~2 KiB of JSON; a replay of a million events
    holds ~110,000 orders, most of them finished long before the log ends. Keeping only the
    ``hot`` most recently touched states live bounds a replay's memory (measured in
    ``bench.replay``); a cold state costs one ``orjson.loads`` when its order comes back.
    """

    def __init__(self, hot: int = 20_000) -> None:
        self.hot_max = hot
        self._hot: dict[str, State] = {}  # insertion order = recency
        self._cold: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._hot) + len(self._cold)

    def __contains__(self, key: object) -> bool:
        return key in self._hot or key in self._cold

    def get(self, key: str) -> State | None:
        state = self._hot.pop(key, None)
        if state is None:
            raw = self._cold.pop(key, None)
            if raw is None:
                return None
            state = orjson.loads(raw)
        self._hot[key] = state
        self._evict()
        return state

    def put(self, key: str, state: State) -> None:
        self._cold.pop(key, None)
        self._hot.pop(key, None)
        self._hot[key] = state
        self._evict()

    def _evict(self) -> None:
        while len(self._hot) > self.hot_max:
            key = next(iter(self._hot))
            self._cold[key] = orjson.dumps(self._hot.pop(key))

    def keys(self) -> list[str]:
        return [*self._hot, *self._cold]

    def peek(self, key: str) -> State | None:
        """The state without making it hot (for a final pass over every order)."""
        state = self._hot.get(key)
        if state is None and key in self._cold:
            state = orjson.loads(self._cold[key])
        return state


class Folder:
    """Folds records chunk by chunk with the worker's step, keeping every order's state
    (``spill=True``: in a ``SpillingStates``, for replays of long logs)."""

    def __init__(self, codec: AvroCodec, *, spill: bool = False) -> None:
        self.projection = OrderProjection(codec)
        self.result = ReplayResult()
        self.spilled = SpillingStates() if spill else None

    def add(self, records: list[SourceRecord]) -> None:
        if self.spilled is not None:
            sp = self.spilled

            def state_of(keys: list[str]) -> dict[str, State]:
                out = {}
                for k in keys:
                    st = sp.get(k)
                    if st is not None:
                        out[k] = st
                return out

            batch = fold_batch(self.projection, records, state_of)
            for key, f in batch.folded.items():
                if f.state is not None and f.changed:
                    sp.put(key, f.state)
        else:
            states = self.result.states
            batch = fold_batch(self.projection, records, lambda keys: {k: states[k] for k in keys if k in states})
            for key, f in batch.folded.items():
                if f.state is not None:
                    states[key] = f.state
        self.result.events += len(records)
        self.result.counts.add(batch.counts)
        self.result.dead_letters.extend(str(d) for d in batch.dead_letters)


def replay_records(records: Iterable[SourceRecord], codec: AvroCodec) -> ReplayResult:
    folder = Folder(codec)
    chunk: list[SourceRecord] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            folder.add(chunk)
            chunk = []
    if chunk:
        folder.add(chunk)
    return folder.result


def replay_batches(batches: Iterable[list[SourceRecord]], codec: AvroCodec) -> ReplayResult:
    folder = Folder(codec)
    for batch in batches:
        folder.add(batch)
    return folder.result


# --- the topic ---------------------------------------------------------------------------------


def read_topic_batches(bootstrap: str, topic: str, partitions: Iterable[int] | None = None,
                       timeout_s: float = 30.0, batch: int = CHUNK) -> Iterator[list[SourceRecord]]:
    """Every record of ``topic`` (or of some of its partitions) from the beginning to the end it has now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer({**client_config(bootstrap), "group.id": f"kuailv-replay-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.max.bytes": 16 * 1024 * 1024, "max.partition.fetch.bytes": 4 * 1024 * 1024,
                         "queued.max.messages.kbytes": 16 * 1024})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if meta.topics[topic].error is not None:
            raise KafkaException(meta.topics[topic].error)
        wanted = sorted(meta.topics[topic].partitions) if partitions is None else sorted(partitions)
        ends: dict[int, int] = {}
        assign = []
        for p in wanted:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout_s)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        consumer.assign(assign)
        idle = 0.0
        while ends:
            msgs = consumer.consume(batch, 1.0)
            if not msgs:
                idle += 1.0
                if idle > timeout_s:
                    raise TimeoutError(f"no records from {topic} for {timeout_s}s; still waiting on {sorted(ends)}")
                continue
            idle = 0.0
            out = []
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                p = msg.partition()
                end = ends.get(p)
                if end is None or msg.offset() >= end:
                    continue  # appended after we started: not part of this snapshot
                out.append(from_confluent(msg))
                if msg.offset() + 1 >= end:
                    del ends[p]
            if out:
                yield out
    finally:
        consumer.close()


def _watermarks(consumer: Any, tp: Any, timeout_s: float) -> tuple[int, int]:
    """A partition's low and high offsets, waiting out a retriable error: a topic created a moment ago
    can answer NOT_LEADER_FOR_PARTITION while its metadata already names a leader."""
    from confluent_kafka import KafkaError, KafkaException

    waiting = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.code() in waiting or error.retriable()) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Iterator[SourceRecord]:
    """Every record of ``topic`` from the beginning to the end it has now."""
    for batch in read_topic_batches(bootstrap, topic, timeout_s=timeout_s):
        yield from batch


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[int]:
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({**client_config(bootstrap), "group.id": f"kuailv-replay-{uuid.uuid4()}"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if meta.topics[topic].error is not None:
            raise KafkaException(meta.topics[topic].error)
        return sorted(meta.topics[topic].partitions)
    finally:
        consumer.close()


# --- record-log files -----------------------------------------------------------------------


def _datum(records: list[SourceRecord]) -> dict[str, Any]:
    return {"topic": records[0].topic, "partition": records[0].partition, "offsets": [r.offset for r in records],
            "timestamps": [-1 if r.timestamp_ms is None else r.timestamp_ms for r in records],
            "keys": [r.key or b"" for r in records], "values": [r.value or b"" for r in records],
            "null_keys": [i for i, r in enumerate(records) if r.key is None],
            "null_values": [i for i, r in enumerate(records) if r.value is None]}


def write_record_log(batches: Iterable[list[SourceRecord]], out: BinaryIO) -> int:
    """Write records as a record log: an Avro container of per-partition record batches (deflate)."""
    pending: dict[tuple[str, int], list[SourceRecord]] = {}
    n = 0

    def data() -> Iterator[dict[str, Any]]:
        nonlocal n
        for batch in batches:
            for rec in batch:
                bucket = pending.setdefault((rec.topic, rec.partition), [])
                bucket.append(rec)
                n += 1
                if len(bucket) >= BLOCK_RECORDS:
                    yield _datum(bucket)
                    del pending[(rec.topic, rec.partition)]
        for bucket in pending.values():
            yield _datum(bucket)

    fastavro.writer(out, RECORD_BATCH_SCHEMA, data(), codec="deflate", sync_interval=64 * 1024)
    return n


def is_record_log(path: str) -> bool:
    with open(path, "rb") as fh:
        return fastavro.is_avro(fh)


def read_record_log(path: str, keep: Any = None) -> Iterator[list[SourceRecord]]:
    """The records of a record log, a partition batch at a time; ``keep(topic, partition)`` selects."""
    with open(path, "rb") as fh:
        for d in fastavro.reader(fh, reader_schema=RECORD_BATCH_SCHEMA):
            topic, partition = d["topic"], d["partition"]
            if keep is not None and not keep(topic, partition):
                continue
            keys, values = d["keys"], d["values"]
            for i in d["null_keys"]:
                keys[i] = None
            for i in d["null_values"]:
                values[i] = None
            yield [SourceRecord(topic, partition, off, k, v, None if ts < 0 else ts)
                   for off, ts, k, v in zip(d["offsets"], d["timestamps"], keys, values, strict=True)]


# --- JSON-lines export -------------------------------------------------------------------------


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
