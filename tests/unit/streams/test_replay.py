"""Replay: a JSON-lines history folds to the same views as the live fold;
bad lines are reported with file:line and skipped; export -> replay round-trips."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from simulator.events import MINUTE, T0, Event, order_story, payment_confirmed
from streams.replay import export_lines, replay_lines, replay_records
from streams.source import SourceRecord
from tests.unit.privacy.sealed_logs import has_plaintext, sealed_log

CODEC = AvroCodec()
ENDINGS = ["signed", "redispatched", "refused", "cancelled", "out_of_stock"]


def history(sealed: bool = False) -> list[Event]:
    """Five stories, duplicated and reordered; ``sealed``: as the command side writes them (personal fields sealed)."""
    events = [ev for i, ending in enumerate(ENDINGS)
              for ev in order_story(f"O-{i + 1}", T0 + i * MINUTE, ending=ending)]
    rng = random.Random(7)
    log = events + rng.sample(events, 10)  # duplicates
    rng.shuffle(log)  # and reordering
    return sealed_log(log) if sealed else log


def json_line(event_type: str, event: dict[str, Any]) -> str:
    return json.dumps({"event_type": event_type, "event": CODEC.to_avro_json(event_type, event)}, ensure_ascii=False)


def want_views(events: list[Event]) -> list[dict[str, Any]]:
    states, _ = fold_all(events)
    return [public_view(states[oid]["view"]) for oid in sorted(states) if states[oid]["view"] is not None]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_replaying_a_file_gives_the_views_of_fold_all(tmp_path: Path, sealed: bool) -> None:
    events = history(sealed)
    path = write(tmp_path, [json_line(t, e) for t, e in events])
    with path.open(encoding="utf-8") as f:
        result = replay_lines(f, CODEC, source=str(path))
    assert result.dead_letters == [] and result.rejections == []
    assert result.events == len(events)
    assert list(result.views()) == want_views(events)
    assert result.states == fold_all(events)[0]
    assert {v["status"] for v in result.views()} == {"SIGNED", "RETURNING", "CANCELLED", "OUT_OF_STOCK"}
    assert has_plaintext(list(result.views()), ("张三", "李厨师")) is not sealed


def test_bad_lines_are_reported_with_file_and_line_and_the_replay_goes_on(tmp_path: Path) -> None:
    story = order_story("O-1")
    _, pay = payment_confirmed("O-9", 2, T0, 100)
    pay_json = CODEC.to_avro_json("PaymentConfirmed", pay)
    lines = [json_line(*story[0]),
             "this is not json",  # 2
             json.dumps({"event_type": "OrderTeleported", "event": {"order_id": "O-1"}}),  # 3
             "",  # 4: blank lines are skipped, but still counted
             json_line(*story[1]),
             json.dumps({"event_type": "PaymentConfirmed", "event": {**pay_json, "event_time": "yesterday"}}),  # 6
             json.dumps({"event_type": "PaymentConfirmed", "event": {**pay_json, "method": "BITCOIN"}}),  # 7
             json.dumps({"event_type": "PaymentConfirmed"}),  # 8
             json.dumps(["PaymentConfirmed", pay_json]),  # 9
             '{"event_type": "OrderPacked", "event": {',  # 10: truncated
             *(json_line(t, e) for t, e in story[2:])]
    path = write(tmp_path, lines)
    result = replay_lines(path.read_text(encoding="utf-8").splitlines(), CODEC, source=str(path))
    assert [d.split(": ", 1)[0] for d in result.dead_letters] == [f"{path}:{n}" for n in (2, 3, 6, 7, 8, 9, 10)]
    assert "OrderTeleported" in result.dead_letters[1]
    assert "BITCOIN" in result.dead_letters[3]
    assert result.events == len(story)
    assert list(result.views()) == want_views(story)


@pytest.mark.parametrize(("field", "value"), [("version", "two"), ("amount_cents", "100"), ("amount_cents", 1.5),
                                              ("order_id", 42), ("event_id", None)])
def test_a_field_of_the_wrong_type_is_a_reported_line(tmp_path: Path, field: str, value: Any) -> None:
    # from_avro_json does not type-check (fastavro's JSON reader passes these through), so such a
    # line is folded as if it were an event: a string amount ends up in the view, a string
    # version becomes a Rejection without file:line, and the replay no longer equals a live run
    # (Avro on the topic can never carry these values).
    story = order_story("O-1")[:3]
    bad = CODEC.to_avro_json(*story[1])
    bad[field] = value
    lines = [json_line(*story[0]), json.dumps({"event_type": "PaymentConfirmed", "event": bad}), json_line(*story[1]),
             json_line(*story[2])]
    result = replay_lines(lines, CODEC, source="history.jsonl")
    assert [d.split(": ", 1)[0] for d in result.dead_letters] == ["history.jsonl:2"]
    assert list(result.views()) == want_views(story)


def test_a_known_non_order_record_is_a_reported_line_not_a_crash() -> None:
    ping = {"event_id": "g-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": T0,
            "producer": "driver-app", "lat": 39.9, "lng": 116.4, "speed_kmh": 30.0, "heading_deg": 0.0,
            "accuracy_m": None}
    story = order_story("O-1")
    lines = [json_line(*story[0]), json_line("GpsPing", ping), *(json_line(t, e) for t, e in story[1:])]
    result = replay_lines(lines, CODEC, source="mixed.jsonl")  # raises KeyError: 'order_id' today
    assert [d.split(": ", 1)[0] for d in result.dead_letters] == ["mixed.jsonl:2"]
    assert list(result.views()) == want_views(story)


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_export_then_replay_round_trips(sealed: bool) -> None:
    events = history(sealed)
    records = [SourceRecord(ORDER_EVENTS.name, i % 3, i, e["order_id"].encode(), CODEC.encode(t, e), T0 + i)
               for i, (t, e) in enumerate(events)]
    records.insert(5, SourceRecord(ORDER_EVENTS.name, 0, 999, b"O-1", b"garbage", None))
    records.insert(9, SourceRecord(ORDER_EVENTS.name, 0, 1000, b"O-1", struct.pack(">bI", 0, 777) + b"x", None))
    out = io.StringIO()
    assert export_lines(records, CODEC, out) == len(events)  # undecodable records are skipped
    exported = out.getvalue().splitlines()
    assert len(exported) == len(events)
    assert [json.loads(ln)["event_type"] for ln in exported] == [t for t, _ in events]
    replayed = replay_lines(exported, CODEC, source="export.jsonl")
    assert replayed.dead_letters == []
    from_topic = replay_records(records, CODEC)
    assert len(from_topic.dead_letters) == 2
    assert list(replayed.views()) == list(from_topic.views()) == want_views(events)
    assert replayed.states == from_topic.states
    # and exporting the replayed file's events again gives the same lines
    again = io.StringIO()
    export_lines([SourceRecord(ORDER_EVENTS.name, 0, i, json.loads(ln)["event"]["order_id"].encode(),
                               CODEC.encode(json.loads(ln)["event_type"],
                                            CODEC.from_avro_json(json.loads(ln)["event_type"],
                                                                 json.loads(ln)["event"])), None)
                  for i, ln in enumerate(exported)], CODEC, again)
    assert again.getvalue().splitlines() == exported
