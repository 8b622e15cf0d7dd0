"""The Flink job's per-record logic, without PyFlink: same answers as the Faust fold."""

from __future__ import annotations

import random

from jobs.order_state_logic import KeyedEvent, decode_row, fold_event, source_record
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE
from simulator.events import order_story

CODEC = AvroCodec()


def rows(events: list[tuple[str, dict]]) -> list:
    return [source_record(ORDER_EVENTS.name, 0, off, 1000 + off, e["order_id"].encode(), CODEC.encode(t, e))
            for off, (t, e) in enumerate(events)]


def run(records: list) -> tuple[dict, list]:
    states: dict = {}
    outputs: list = []
    for rec in records:
        out = decode_row(CODEC, rec, "flink-test", 0)
        if not isinstance(out, KeyedEvent):
            outputs.append(out)
            continue
        states[out.order_id], emitted = fold_event(CODEC, states.get(out.order_id), out, "flink-test", 0)
        outputs.extend(emitted)
    return states, outputs


def test_shuffled_duplicated_log_gives_the_in_order_states_and_latest_projection_per_order() -> None:
    log = [e for i, ending in enumerate(["signed", "redispatched", "refused", "cancelled"])
           for e in order_story(f"KLF{i}", ending=ending)]
    rng = random.Random(5)
    noisy = log + rng.sample(log, 12)
    rng.shuffle(noisy)
    states, outputs = run(rows(noisy))
    expected, _ = fold_all(log)
    assert states == expected
    latest = {}
    for topic, key, value in outputs:
        assert topic == ORDER_STATE.name
        latest[key.decode()] = CODEC.decode(value).value
    for oid, state in expected.items():
        assert latest[oid]["version"] == state["view"]["version"]
        assert latest[oid]["status"] == state["view"]["status"]


def test_bad_records_become_dead_letters_with_their_position() -> None:
    good = rows(order_story("KLF9")[:2])
    bad = source_record(ORDER_EVENTS.name, 3, 77, None, b"KLF9", b"\x00garbage")
    states, outputs = run([good[0], bad, good[1]])
    dead = [o for o in outputs if o[0] == DEAD_LETTERS.name]
    assert len(dead) == 1
    record = CODEC.decode(dead[0][2]).value
    assert (record["source_partition"], record["source_offset"]) == (3, 77)
    assert record["reason_code"] == "UNKNOWN_SCHEMA_ID" and record["value"] == b"\x00garbage"
    assert states["KLF9"]["view"]["status"] == "PAID"
