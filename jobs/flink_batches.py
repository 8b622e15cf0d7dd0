"""The byte layout of record batches between the job's Java operators and its Python one.

``RecordBatcher`` (Java, after the Kafka source) emits one batch per Kafka partition;
``read_batch`` turns it into ``SourceRecord``s. The Python operator's outputs go back as
one batch that ``UnbatchOutputs`` (Java, before the sink) splits; ``write_outputs`` makes
it. Big-endian, lengths of -1 mean null (``infra/flink/src/main/java/kuailv/flink``).
Pure: no PyFlink, tested on its own and against the Java classes by the job tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from schemas.dead_letters import SourceRecord

_HEAD = struct.Struct(">ih")
_REC = struct.Struct(">qqi")
_LEN = struct.Struct(">i")
_SHORT = struct.Struct(">h")


def read_batch(data: bytes) -> list[SourceRecord]:
    partition, tlen = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size
    topic = data[pos:pos + tlen].decode()
    pos += tlen
    out = []
    end = len(data)
    rec_unpack, len_unpack = _REC.unpack_from, _LEN.unpack_from
    while pos < end:
        offset, ts, klen = rec_unpack(data, pos)
        pos += _REC.size
        if klen < 0:
            key = None
        else:
            key = data[pos:pos + klen]
            pos += klen
        (vlen,) = len_unpack(data, pos)
        pos += 4
        if vlen < 0:
            value = None
        else:
            value = data[pos:pos + vlen]
            pos += vlen
        out.append(SourceRecord(topic, partition, offset, key, value, ts))
    return out


def write_batch(records: Iterable[SourceRecord]) -> bytes:
    """The Java batcher's layout (tests and tools; the job's batches come from Java)."""
    records = list(records)
    topic = records[0].topic.encode() if records else b""
    parts = [_HEAD.pack(records[0].partition if records else 0, len(topic)), topic]
    for r in records:
        parts.append(_REC.pack(r.offset, r.timestamp_ms or 0, -1 if r.key is None else len(r.key)))
        if r.key is not None:
            parts.append(r.key)
        parts.append(_LEN.pack(-1 if r.value is None else len(r.value)))
        if r.value is not None:
            parts.append(r.value)
    return b"".join(parts)


def write_outputs(outputs: Iterable[tuple[str, bytes | None, bytes | None]]) -> bytes:
    parts = []
    for topic, key, value in outputs:
        t = topic.encode()
        parts += [_SHORT.pack(len(t)), t, _LEN.pack(-1 if key is None else len(key))]
        if key is not None:
            parts.append(key)
        parts.append(_LEN.pack(-1 if value is None else len(value)))
        if value is not None:
            parts.append(value)
    return b"".join(parts)


def read_outputs(data: bytes) -> list[tuple[str, bytes | None, bytes | None]]:
    """What ``UnbatchOutputs`` does in Java (tests)."""
    out = []
    pos = 0
    while pos < len(data):
        (tlen,) = _SHORT.unpack_from(data, pos)
        pos += 2
        topic = data[pos:pos + tlen].decode()
        pos += tlen
        fields: list[bytes | None] = []
        for _ in range(2):
            (n,) = _LEN.unpack_from(data, pos)
            pos += 4
            fields.append(None if n < 0 else data[pos:pos + n])
            pos += max(n, 0)
        out.append((topic, fields[0], fields[1]))
    return out
