"""The Flink geofence/alert jobs' Python side (no PyFlink): whatever order the source hands over the
topic-partition batches, the event-time merge + ``TimedBatches`` give what ``kuailv replay`` gives;
and a restore from the keyed state (a new operator instance, empty caches) continues exactly."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from jobs.event_time_merge import EventTimeMerge
from jobs.timed_projection_logic import TimedProjectionLogic
from projections.timed_batch import TimedBatches
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import DEAD_LETTERS, GPS, ORDER_EVENTS, SENSORS, VAN_ORDERS
from streams.replay_streams import StreamReplay, merged_by_time, replay_alerts, replay_geofences
from tests.unit.projections.test_timed_batch import alert_steps, geofence_steps, simulated_topics

CODEC = AvroCodec(epoch_ms=True)
KINDS = {"GeofenceTransition": "transition", "OrderEta": "eta", "Alert": "alert", "DriverStatus": "status",
         "SensorReading": "reading"}  # record type -> output kind


class DictStore:
    """``KeyedStore`` over dicts: one per partition key, like Flink's keyed MapStates."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self._timers: dict[str, int] = {}
        self._marks: dict[str, int] = {}
        self._pending: dict[str, bytes] = {}

    def get_state(self, key: str) -> bytes | None:
        return self.states.get(key)

    def put_states(self, values: Mapping[str, bytes]) -> None:
        self.states.update(values)

    def timers(self) -> Iterable[tuple[str, int]]:
        return list(self._timers.items())

    def put_timers(self, dues: Mapping[str, int | None]) -> None:
        for k, v in dues.items():
            if v is None:
                self._timers.pop(k, None)
            else:
                self._timers[k] = v

    def marks(self) -> Iterable[tuple[str, int]]:
        return list(self._marks.items())

    def put_marks(self, marks: Mapping[str, int]) -> None:
        self._marks.update(marks)

    def pending(self) -> Iterable[tuple[str, bytes]]:
        return list(self._pending.items())

    def put_pending(self, values: Mapping[str, bytes | None]) -> None:
        for k, v in values.items():
            if v is None:
                self._pending.pop(k, None)
            else:
                self._pending[k] = v


@pytest.fixture(scope="module")
def topics() -> dict[str, list[SourceRecord]]:
    return simulated_topics()


def _source_batches(topics: dict[str, list[SourceRecord]], names: tuple[str, ...], seed: int,
                    size: int) -> list[list[SourceRecord]]:
    """Per topic-partition batches in offset order, interleaved at random across topic-partitions: a source
    whose splits progress at different paces (one topic's partition can be read far ahead of the other's)."""
    queues: dict[tuple[str, int], list[SourceRecord]] = {}
    for name in names:
        for rec in topics[name]:
            queues.setdefault((name, rec.partition), []).append(rec)
    rng = random.Random(seed)
    cursors = {k: 0 for k in queues}
    out = []
    while cursors:
        k = rng.choice(sorted(cursors))
        i = cursors[k]
        out.append(queues[k][i:i + size])
        if i + size >= len(queues[k]):
            del cursors[k]
        else:
            cursors[k] = i + size
    return out


def _run_logic(steps: TimedBatches, names: tuple[str, ...], batches: list[list[SourceRecord]],
               restart_every: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Feed the batches with Flink's watermark: per split (topic-partition) the newest timestamp it read
    minus 30 s (bounded out-of-orderness), a split that read nothing yet holds it, a finished one does not;
    the minimum over splits. At the end it jumps to +inf (end of input). ``restart_every``: a new logic
    instance every N batches, from the same stores (a restore)."""
    stores: dict[str, DictStore] = {}
    low, high = -(2**62), 2**62
    split_marks = {(b[0].topic, b[0].partition): low for b in batches}
    last_batch = {(b[0].topic, b[0].partition): i for i, b in enumerate(batches)}

    def new() -> TimedProjectionLogic:
        return TimedProjectionLogic(steps, CODEC, "flink:test", names, lambda: 0)

    logic = new()
    out: list[tuple[str, bytes, bytes]] = []
    for n, batch in enumerate(batches):
        if restart_every and n and n % restart_every == 0:
            logic = new()
        split = (batch[0].topic, batch[0].partition)
        pkey = f"[{split[1]}]"
        newest = max(r.timestamp_ms or 0 for r in batch)
        split_marks[split] = high if last_batch[split] == n else max(split_marks[split], newest - 30_000)
        out += logic.add(pkey, batch, stores.setdefault(pkey, DictStore()), min(split_marks.values()))
    for pkey in sorted(stores):
        out += logic.release(pkey, stores[pkey], 2**62)
        assert logic.next_due(pkey) is None
    decoded = [CODEC.decode(v) for t, _, v in out if t != DEAD_LETTERS.name]
    return [(KINDS[d.record_type], d.value) for d in decoded]


def _per_key(outputs: list[tuple[str, dict[str, Any]]], kind: str, *key: str) -> dict[tuple, list[dict[str, Any]]]:
    """Per key, its records in order: a driver's transitions, an order's estimates per dispatch (the van of a
    re-dispatched order is in another partition, whose records interleave with the first van's by timing)."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for k, v in outputs:
        if k == kind:
            out.setdefault(tuple(v[f] for f in key), []).append(v)
    return out


def _latest(outputs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {v["alert_id"]: v for k, v in outputs if k == "alert"}


def _same(flink: list[tuple[str, dict[str, Any]]], replay: StreamReplay) -> None:
    assert _per_key(flink, "transition", "driver_id") == _per_key(replay.outputs, "transition", "driver_id")
    assert _per_key(flink, "eta", "order_id", "dispatch_count") == _per_key(replay.outputs, "eta", "order_id",
                                                                             "dispatch_count")
    assert _latest(flink) == _latest(replay.outputs)
    assert _per_key(flink, "status", "driver_id") == _per_key(replay.outputs, "status", "driver_id")
    assert _per_key(flink, "reading", "device_id") == _per_key(replay.outputs, "reading", "device_id")


@pytest.mark.parametrize("seed,size,restart", [(1, 50, None), (2, 7, None), (3, 200, 5)])
def test_geofences_as_replay_whatever_the_source_order(topics: dict[str, list[SourceRecord]], seed: int,
                                                       size: int, restart: int | None) -> None:
    names = (GPS.name, VAN_ORDERS.name)
    replay = replay_geofences(geofence_steps().projection, merged_by_time([topics[n] for n in names]))
    assert len(replay.transitions()) > 20
    flink = _run_logic(geofence_steps(), names, _source_batches(topics, names, seed, size), restart)
    _same(flink, replay)


@pytest.mark.parametrize("seed,size,restart", [(4, 40, None), (5, 300, 3)])
def test_alerts_as_replay_whatever_the_source_order(topics: dict[str, list[SourceRecord]], seed: int, size: int,
                                                    restart: int | None) -> None:
    names = (ORDER_EVENTS.name, SENSORS.name)
    steps = alert_steps()
    replay = replay_alerts(steps.projection, merged_by_time([topics[n] for n in names]), 60_000)
    assert len(replay.alerts()) > 10
    _same(_run_logic(steps, names, _source_batches(topics, names, seed, size), restart), replay)


def test_merge_releases_the_smallest_head_behind_the_watermark_and_keeps_offset_order() -> None:
    def rec(topic: str, offset: int, ts: int) -> SourceRecord:
        return SourceRecord(topic, 0, offset, b"k", b"v", ts)

    merge = EventTimeMerge(("a", "b"))
    merge.add([rec("a", 0, 100), rec("a", 1, 50), rec("a", 2, 110)])  # offset 1 is a late record
    merge.add([rec("b", 0, 60), rec("b", 1, 100)])
    released, _ = merge.release(70)
    assert [(r.topic, r.offset) for r in released] == [("b", 0)]
    assert merge.next_due() == 100
    released, _ = merge.release(105)  # tie at 100: the earlier topic first; the late record after its predecessor
    assert [(r.topic, r.offset) for r in released] == [("a", 0), ("a", 1), ("b", 1)]
    again = EventTimeMerge.load(("a", "b"), {"a": merge.dump("a") or b"", "b": merge.dump("b") or b""})
    assert [(r.topic, r.offset) for r in again.release(2**62)[0]] == [("a", 2)]
    assert merge.held() == 1 and again.held() == 0
    with pytest.raises(ValueError, match="c\\[0\\]@0: not an input"):
        merge.add([rec("c", 0, 1)])
