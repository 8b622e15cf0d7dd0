"""What the order-state Flink job does per batch, without PyFlink.

``OrderStateLogic.process_batch(records, get, put_all)`` is the whole Python side of the job
for one batch of a Kafka partition's records (``jobs.flink_batches``): the worker's step
(``projections.keyed_batch.fold_batch`` with ``OrderProjection``), then one projection
record per order whose visible view changed (encoded incrementally from the order's
previous encoding, like the worker), the ``VanOrder`` records of orders that moved on or off a van
(``kuailv.van-orders.v1``, keyed by driver: the geofence job's second input) and the dead
letters. The Python operator is called once per batch, so the JVM/Python boundary is crossed
twice per batch, not per record.

State: the operator is keyed by Kafka partition; a ``MapState`` under that key holds each
order's fold state as compact JSON (orjson). ``get(order_id)`` reads it, ``put_all`` writes
every changed order of the batch in one call (that is what checkpoints snapshot). Reads go
through a bounded per-operator cache of decoded states: only this operator instance writes
its partitions' states between restores, and a restore creates a new instance with an
empty cache, so a cached state is always the one in Flink's state. The encoded-view memo
lives in the same cache; a miss means a full encode, never a wrong one.

Outputs are ``(topic, key, value)`` byte triples for a topic-routing Kafka sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from projections.keyed_batch import Counts, fold_batch
from projections.order_state import State
from projections.order_step import OrderProjection, derived_records
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.fieldwise_encoder import Encoded
from schemas.topics import ORDER_STATE

Output = tuple[str, bytes, bytes]


def source_record(topic: str, partition: int, offset: int, timestamp_ms: int | None, key: Any,
                  value: Any) -> SourceRecord:
    return SourceRecord(topic, int(partition), int(offset), as_bytes(key), as_bytes(value), timestamp_ms)


def as_bytes(b: Any) -> bytes | None:
    """PyFlink hands a Java byte[] over as bytes, bytearray or a list of signed ints (-128..127)."""
    if b is None or isinstance(b, bytes):
        return b
    if isinstance(b, bytearray):
        return bytes(b)
    return bytes(v & 0xFF for v in b)


def dump_state(state: State) -> bytes:
    return orjson.dumps(state)


def load_state(raw: Any) -> State | None:
    return None if raw is None else orjson.loads(as_bytes(raw))  # type: ignore[arg-type]


class OrderStateLogic:
    def __init__(self, codec: AvroCodec, consumer: str, wall_clock_ms: Callable[[], int],
                 cache_keys: int = 50_000) -> None:
        self.codec = codec
        self.projection = OrderProjection(codec)
        self.consumer = consumer
        self._now = wall_clock_ms  # only for DeadLetter.failed_at
        self.cache_keys = cache_keys
        self._cache: dict[str, tuple[State, Encoded | None]] = {}  # insertion order = recency
        self.totals = Counts()

    def process_batch(self, records: Sequence[SourceRecord], get: Callable[[str], Any],
                      put_all: Callable[[Mapping[str, bytes]], None]) -> list[Output]:
        cache = self._cache

        def state_of(keys: Sequence[str]) -> dict[str, State]:
            out = {}
            for key in keys:
                hit = cache.get(key)
                if hit is not None:
                    out[key] = hit[0]
                    continue
                state = load_state(get(key))
                if state is not None:
                    out[key] = state
                    cache[key] = (state, None)
            return out

        result = fold_batch(self.projection, records, state_of)
        self.totals.add(result.counts)
        outputs: list[Output] = []
        changed: dict[str, bytes] = {}
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            hit = cache.pop(key, None)
            memo = hit[1] if hit is not None else None
            changed[key] = dump_state(f.state)
            if f.published:
                memo = self.projection.encode_view(f.state, memo)
                outputs.append((ORDER_STATE.name, key.encode(), memo.data))
            # moves between vans and re-dispatch requests, in version order (as the worker)
            outputs += [(topic, k, v) for topic, k, v, _ in derived_records(self.codec, f.outputs)]
            cache[key] = (f.state, memo)
        if result.dead_letters:
            failed_at = self._now()
            outputs += [d.encode(self.codec, self.consumer, failed_at) for d in result.dead_letters]
        if changed:
            put_all(changed)
        while len(cache) > self.cache_keys:
            del cache[next(iter(cache))]
        return outputs

    def clear(self) -> None:
        self._cache.clear()
