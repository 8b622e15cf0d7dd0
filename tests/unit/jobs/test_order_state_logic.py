"""The Flink job's per-batch logic, without PyFlink: same answers as the pure fold, Flink's
MapState stood in for by a dict (the job hands ``get``/``put_all`` over)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from jobs.order_state_logic import OrderStateLogic, dump_state, load_state, source_record
from projections.order_state import fold_all
from projections.timefmt import jsonable
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, FLEET, ORDER_EVENTS, ORDER_STATE, VAN_ORDERS
from simulator.events import order_story
from tests.unit.privacy.sealed_logs import has_plaintext, sealed_log

CODEC = AvroCodec()


class FlinkState:
    """The MapState of one partition key: order id -> the bytes the job stores."""

    def __init__(self) -> None:
        self.slots: dict[str, bytes] = {}
        self.updates = 0
        self.reads = 0
        self.put_calls = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return self.slots.get(key)

    def put_all(self, values: dict[str, bytes]) -> None:
        self.put_calls += 1
        self.updates += len(values)
        self.slots.update(values)


def rows(events: list[tuple[str, dict]], partition: int = 0) -> list:
    return [source_record(ORDER_EVENTS.name, partition, off, 1000 + off, e["order_id"].encode(), CODEC.encode(t, e))
            for off, (t, e) in enumerate(events)]


def run(records: list, logic: OrderStateLogic | None = None, state: FlinkState | None = None,
        batch: int = 1) -> tuple[dict, list]:
    logic = logic or OrderStateLogic(AvroCodec(epoch_ms=True), "flink-test", lambda: 0)
    state = state or FlinkState()
    outputs: list = []
    for i in range(0, len(records), batch):
        outputs.extend(logic.process_batch(records[i:i + batch], state.get, state.put_all))
    return {k: load_state(v) for k, v in state.slots.items()}, outputs


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_shuffled_duplicated_log_gives_the_in_order_states_and_latest_projection_per_order(sealed: bool) -> None:
    """``sealed``: the log as the command side writes it (personal fields sealed): the same outcome."""
    log = [e for i, ending in enumerate(["signed", "redispatched", "refused", "cancelled"])
           for e in order_story(f"KLF{i}", ending=ending)]
    log = sealed_log(log) if sealed else log
    rng = random.Random(5)
    noisy = log + rng.sample(log, 12)
    rng.shuffle(noisy)
    states, outputs = run(rows(noisy), batch=5)
    expected, _ = fold_all(log)
    assert states == jsonable(expected)
    latest = {}
    van_orders: dict[str, list[dict[str, Any]]] = {}
    requests = []
    for topic, key, value in outputs:
        if topic == FLEET.name:  # the accident of the redispatched story: a re-dispatch request
            requests.append((key.decode(), CODEC.decode(value).value["request_id"]))
            continue
        if topic == VAN_ORDERS.name:  # orders moving on/off vans, keyed by driver
            vo = CODEC.decode(value).value
            assert key.decode() == vo["driver_id"]
            van_orders.setdefault(vo["order_id"], []).append(vo)
            continue
        assert topic == ORDER_STATE.name
        latest[key.decode()] = CODEC.decode(value).value
        assert CODEC.encode("OrderState", CODEC.decode(value).value) == value  # incremental = full encode
    for oid, state in expected.items():
        assert jsonable(latest[oid]) == state["view"]
    assert has_plaintext((latest, states), ("张三", "13800001234", "李厨师")) is not sealed
    assert [vo["state"] for vo in van_orders["KLF1"]][:2] == ["ON_BOARD", "OFF_BOARD"]  # redispatched: off the 1st van
    assert requests == [("KLF1", "KLF1#1")]


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


def test_state_is_read_from_flink_once_per_key_and_written_once_per_batch() -> None:
    story = order_story("KLF7")
    state = FlinkState()
    states, _ = run(rows(story + story[:3]), state=state, batch=4)  # three re-deliveries change nothing
    assert state.reads == 1
    assert state.put_calls == state.updates == -(-len(story) // 4)
    assert states["KLF7"] == jsonable(fold_all(story)[0]["KLF7"])


def test_after_a_restore_the_state_comes_from_flink_and_the_fold_continues() -> None:
    story = order_story("KLF8", ending="redispatched")
    state = FlinkState()
    run(rows(story[:5]), state=state)
    snapshot = dict(state.slots)  # what a checkpoint holds
    restored = FlinkState()
    restored.slots = snapshot
    states, outputs = run(rows(story[5:]), state=restored, batch=3)  # a new operator instance: empty cache
    assert restored.reads == 1
    assert states["KLF8"] == jsonable(fold_all(story)[0]["KLF8"])
    assert CODEC.decode([o for o in outputs if o[0] == ORDER_STATE.name][-1][2]).value["version"] == len(story)


def test_a_fold_bug_parks_the_records_of_that_order_and_keeps_its_state(monkeypatch: Any) -> None:
    import projections.order_step as order_step

    story = order_story("KLF6")
    logic = OrderStateLogic(AvroCodec(epoch_ms=True), "flink-test", lambda: 0)
    state = FlinkState()
    run(rows(story[:2]), logic, state)
    before = dict(state.slots)
    real = order_step.fold

    def boom(*a: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(order_step, "fold", boom)
    _, outputs = run(rows(story[2:3]), logic, state)
    [(topic, _, value)] = outputs
    assert topic == DEAD_LETTERS.name and CODEC.decode(value).value["reason_code"] == "PROCESSING_ERROR"
    assert state.slots == before
    monkeypatch.setattr(order_step, "fold", real)
    states, _ = run(rows(story[2:]), logic, state)
    assert states["KLF6"] == jsonable(fold_all(story)[0]["KLF6"])


def test_state_round_trips_through_its_stored_form() -> None:
    state = fold_all(order_story("KLF5", ending="refused"))[0]["KLF5"]
    assert load_state(dump_state(state)) == jsonable(state)
    assert load_state(list(dump_state(state))) == jsonable(state)  # a Java byte[] as signed ints
