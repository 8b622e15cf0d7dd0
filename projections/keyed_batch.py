"""A batch of raw records through one keyed projection: the engine-neutral step.

Every projection has the same shape: ``decode`` turns a consumed record into a keyed
event or a dead letter; ``fold`` turns a key's state and that key's events of the
batch (in arrival order) into the key's new state and what it emits. ``fold_batch``
runs both over a whole batch: it decodes every record, groups the events by key,
folds each key once, and isolates failures, so an exception in one key's fold parks
only that key's records (``PROCESSING_ERROR``) and the rest of the batch goes on.

The worker (``streams.runtime``, ``streams.order_agent``), replay and the Flink job all call
this, so they cannot disagree. Pure: no I/O, no clock. See ``docs/hot-path.md``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Protocol, TypeVar

from projections.order_events import InvalidEvent
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.errors import CodecError

S = TypeVar("S")  # a key's state
E = TypeVar("E")  # a decoded event


@dataclass(frozen=True, slots=True)
class Keyed(Generic[E]):
    """A decoded event and the key it belongs to (its Kafka message key)."""

    key: str
    event: E


@dataclass(slots=True)
class Folded(Generic[S]):
    """One key's fold over its events of a batch."""

    state: S | None
    changed: bool = False  # the state moved: persist it
    published: bool = False  # what consumers see moved: publish it
    outputs: list[Any] = field(default_factory=list)  # projection-specific emissions (points, alerts, ...)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    buffered: int = 0


class KeyedProjection(Protocol[S, E]):
    name: str

    def decode(self, rec: SourceRecord) -> Keyed[E] | DeadLetter: ...

    def fold(self, key: str, state: S | None, items: Sequence[tuple[SourceRecord, E]]) -> Folded[S]: ...


class BatchPreparing(Protocol[E]):
    """Optional: a projection that also has ``prepare`` sees the whole decoded batch once, before
    any key is folded, and may replace each key's events in place (vectorised work over the
    batch, e.g. one spatial-index query for every GPS point: ``projections.geofence_step``)."""

    def prepare(self, by_key: dict[str, list[tuple[SourceRecord, E]]]) -> None: ...


@dataclass(slots=True)
class Counts:
    """What a batch did; workers add these up per agent (``kuailv stats``)."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    buffered: int = 0
    dead_letters: int = 0
    orders_written: int = 0
    points_written: int = 0
    positions_written: int = 0
    transitions_written: int = 0
    alerts_written: int = 0
    etas_written: int = 0

    def add(self, other: Counts) -> None:
        for name in _COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNT_FIELDS}


_COUNT_FIELDS = tuple(f.name for f in fields(Counts))


@dataclass(slots=True)
class BatchResult(Generic[S]):
    folded: dict[str, Folded[S]]  # per key, in the order keys first appeared in the batch
    dead_letters: list[DeadLetter]
    counts: Counts
    partitions: dict[str, tuple[str, int]] = field(default_factory=dict)  # (topic, partition) of each key


def group_by_key(projection: KeyedProjection[S, E], records: Sequence[SourceRecord],
                 dead: list[DeadLetter]) -> dict[str, list[tuple[SourceRecord, E]]]:
    """Decode every record; events grouped by key in arrival order, the rest into ``dead``."""
    by_key: dict[str, list[tuple[SourceRecord, E]]] = {}
    decode = projection.decode
    for rec in records:
        out = decode(rec)
        if type(out) is DeadLetter:
            dead.append(out)
        else:
            items = by_key.get(out.key)  # type: ignore[union-attr]
            if items is None:
                by_key[out.key] = [(rec, out.event)]  # type: ignore[union-attr]
            else:
                items.append((rec, out.event))  # type: ignore[union-attr]
    return by_key


def fold_batch(projection: KeyedProjection[S, E], records: Sequence[SourceRecord],
               state_of: Callable[[Sequence[str]], Mapping[str, S]]) -> BatchResult[S]:
    """Decode, group and fold ``records``. ``state_of(keys)`` gives the current state of the
    keys the batch touches (missing key: no state yet); it is called once, after decoding."""
    dead: list[DeadLetter] = []
    by_key = group_by_key(projection, records, dead)
    prepare = getattr(projection, "prepare", None)
    if prepare is not None and by_key:
        prepare(by_key)
    states = state_of(list(by_key))
    counts = Counts(records=len(records))
    folded: dict[str, Folded[S]] = {}
    partitions: dict[str, tuple[str, int]] = {}
    for key, items in by_key.items():
        try:
            f = projection.fold(key, states.get(key), items)
        except Exception as exc:  # a bug must not stop the batch: park this key's records
            reason = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3).splitlines()[-1]}"
            dead.extend(processing_error(rec, reason, ev) for rec, ev in items)
            continue
        folded[key] = f
        partitions[key] = (items[0][0].topic, items[0][0].partition)
        counts.applied += f.applied
        counts.duplicates += f.duplicates
        counts.buffered += f.buffered
        dead.extend(f.dead_letters)
    counts.dead_letters = len(dead)
    return BatchResult(folded, dead, counts, partitions)


def decode_as(codec: Any, rec: SourceRecord, expected: str | tuple[str, ...]) -> Any:
    """``codec.decode`` of a record that must be an ``expected`` record (e.g. ``GpsPing``, or one of a
    tuple of types): the ``Decoded``, or the ``DeadLetter`` saying why not (undecodable, or another type)."""
    try:
        decoded = codec.decode(rec.value)
    except CodecError as exc:
        return DeadLetter(rec, exc.reason_code, str(exc), schema_id=exc.schema_id)
    if decoded.record_type != expected and (type(expected) is str or decoded.record_type not in expected):
        return DeadLetter(rec, "UNEXPECTED_RECORD_TYPE", f"{decoded.record_type} does not belong on {rec.topic}",
                          decoded.value.get("event_id"), decoded.record_type, decoded.schema_id)
    return decoded


def decode_checked(codec: Any, rec: SourceRecord, expected: str | tuple[str, ...], key_field: str | Mapping[str, str],
                   validate: Callable[[Mapping[str, Any]], None] | None = None) -> Any:
    """``decode_as`` plus the checks every keyed input needs: the message key is the record's
    ``key_field`` (per record type when a mapping; else the partitioning is wrong), and ``validate``
    (raising ``InvalidEvent``) accepts it. A failure is an ``INVALID_EVENT`` dead letter."""
    decoded = decode_as(codec, rec, expected)
    if type(decoded) is DeadLetter:
        return decoded
    value = decoded.value
    key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
    if type(key_field) is not str:
        key_field = key_field[decoded.record_type]
    try:
        if key != value[key_field]:
            raise InvalidEvent(f"message key {key!r} is not the {key_field} {value[key_field]!r}")
        if validate is not None:
            validate(value)
    except (InvalidEvent, KeyError, TypeError) as exc:
        return DeadLetter(rec, "INVALID_EVENT", str(exc), value.get("event_id"), decoded.record_type,
                          decoded.schema_id)
    return decoded


def skip_applied(positions: Mapping[str, int], items: Sequence[tuple[SourceRecord, E]]
                 ) -> tuple[dict[str, int], list[tuple[SourceRecord, E]], int]:
    """At-least-once input: drop the records at or below the last offset a key's state has applied
    per source partition (``positions``: ``"topic:partition"`` -> offset). Returns the new positions,
    the records still to apply and how many were skipped."""
    new = dict(positions)
    fresh: list[tuple[SourceRecord, E]] = []
    for rec, ev in items:
        where = f"{rec.topic}:{rec.partition}"
        if rec.offset <= new.get(where, -1):
            continue
        new[where] = rec.offset
        fresh.append((rec, ev))
    return new, fresh, len(items) - len(fresh)


def processing_error(rec: SourceRecord, reason: str, event: Any = None) -> DeadLetter:
    """A record parked because our own code failed on it (event details when decoded)."""
    value = getattr(event, "value", None)
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return DeadLetter(rec, "PROCESSING_ERROR", reason, event_id, getattr(event, "record_type", None),
                      getattr(event, "schema_id", None))
