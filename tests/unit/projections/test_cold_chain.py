"""Cold-chain breach and trip exposure on one van compartment's readings, in event-time order."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from config.alert_rules import load_rules_file
from projections.alerts import AlertChange, apply_changes
from projections.cold_chain import step
from simulator.events import MINUTE, T0

RULES = load_rules_file()
VAN = "VAN-001"
ORDERS = ("KL1", "KL2")
Feed = list[tuple[dict[str, Any], Sequence[str]]]


def reading(minute: float, celsius: float, compartment: str = "CHILLED", **extra: Any) -> dict[str, Any]:
    at = T0 + round(minute * MINUTE)
    return {"event_id": f"sen-{compartment}-{at}", "device_id": "SEN-VAN-001-A", "vehicle_id": VAN,
            "warehouse_id": None, "compartment": compartment, "event_time": at, "producer": "sensor-gateway",
            "temperature_c": celsius, "humidity_pct": 85.0, **extra}


def series(start: float, stop: float, celsius: float, every: float = 1.0, **kw: Any) -> list[dict[str, Any]]:
    count = round((stop - start) / every)
    return [reading(start + i * every, celsius, **kw) for i in range(count)]


def feed(readings: list[dict[str, Any]], on_board: Sequence[str] = ORDERS,
         state: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, list[AlertChange]]:
    return feed_pairs([(r, on_board) for r in readings], state)


def feed_pairs(pairs: Feed, state: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, list[AlertChange]]:
    changes: list[AlertChange] = []
    for r, boarded in pairs:
        state, decided = step(state, r, RULES, boarded)
        changes += decided
    return state, changes


def book_of(changes: list[AlertChange]) -> dict[str, dict[str, Any]]:
    book: dict[str, dict[str, Any]] = {}
    apply_changes(book, changes)
    return book


def test_a_compressor_failure_opens_a_breach_that_resolves_when_the_sensor_recovers() -> None:
    readings = series(0, 5, 2.5) + series(5, 21, 8.5) + series(21, 25, 3.0)
    readings[10]["temperature_c"] = 11.2  # the peak, at minute 10
    _, changes = feed(readings)
    breaches = [c for c in changes if c.rule_id == "cold-chain-breach"]
    assert [(c.opening, c.at) for c in breaches] == [(True, T0 + 5 * MINUTE), (False, T0 + 21 * MINUTE)]
    opened, resolved = breaches
    assert (opened.subject_kind, opened.subject_id) == ("vehicle", "VAN-001/CHILLED")
    assert opened.subject == {"vehicle_id": VAN, "warehouse_id": None}
    assert opened.evidence == {
        "device_id": "SEN-VAN-001-A", "unit_id": VAN, "compartment": "CHILLED", "range": "0..4 °C",
        "first_breach_at": str(T0 + 5 * MINUTE), "last_breach_at": str(T0 + 15 * MINUTE), "minutes": "10.0",
        "max_c": "11.2", "min_c": "8.5", "readings": "11", "orders": "KL1,KL2", "order_count": "2"}
    assert opened.severity == "CRITICAL" and "DRIVER" in opened.audience
    assert opened.message == ("CHILLED compartment of VAN-001 has been outside 0..4 °C for 10.0 min since "
                              "2026-06-01T06:05:00.000Z (max 11.2 °C)")
    assert resolved.evidence["recovered_at"] == str(T0 + 21 * MINUTE) and resolved.evidence["minutes"] == "16.0"
    alert = book_of(changes)["cold-chain-breach/vehicle/VAN-001/CHILLED"]
    assert (alert["status"], alert["opened_at"], alert["resolved_at"]) == ("RESOLVED", T0 + 5 * MINUTE,
                                                                           T0 + 21 * MINUTE)


def test_a_short_door_opening_is_not_a_breach() -> None:
    _, changes = feed(series(0, 5, 2.5) + series(5, 14, 7.0) + series(14, 20, 2.5), on_board=())
    assert changes == []


def test_too_cold_and_frozen_ranges() -> None:
    _, cold = feed(series(0, 12, -1.5), on_board=())
    assert [(c.opening, c.at) for c in cold] == [(True, T0)]
    _, frozen = feed(series(0, 12, -17.0, compartment="FROZEN"), on_board=())
    assert [(c.subject_id, c.evidence["range"]) for c in frozen] == [("VAN-001/FROZEN", "<= -18 °C")]
    assert feed(series(0, 30, -19.0, compartment="FROZEN"))[1] == []
    assert feed(series(0, 30, 30.0, compartment="AMBIENT"))[1] == []  # no range: never out of it


def test_a_sensor_gap_breaks_the_run_and_is_not_exposure() -> None:
    # out at 0..2, silent 2..30, out at 30..35: never ten continuous minutes with readings <= 5 min apart
    readings = series(0, 3, 9.0) + series(30, 36, 9.0) + series(36, 40, 2.0)
    state, changes = feed(readings)
    assert [c for c in changes if c.rule_id == "cold-chain-breach"] == []
    assert state is not None
    # exposure: 2 min (0..2) + 5 min (the 28 min gap, capped) + 6 min (30..36) = 13 min < 15
    assert state["trip"]["exposure_ms"] == 13 * MINUTE and changes == []


def test_an_open_breach_survives_a_sensor_gap_until_an_in_range_reading() -> None:
    readings = series(0, 11, 9.0) + series(40, 42, 9.0) + [reading(42, 3.0)]
    _, changes = feed(readings, on_board=())
    assert [(c.opening, c.at) for c in changes] == [(True, T0), (False, T0 + 42 * MINUTE)]


def test_exposure_accumulates_over_a_trip_opens_once_and_resolves_when_the_trip_ends() -> None:
    readings: list[dict[str, Any]] = []
    for k in range(5):  # five door openings of 4 min each, 10 min apart: no single breach reaches 10 min
        readings += series(10 * k, 10 * k + 4, 7.5) + series(10 * k + 4, 10 * k + 10, 2.5)
    pairs: Feed = [(r, ORDERS) for r in readings] + [(reading(50, 2.5), ())]
    pairs[0] = (pairs[0][0], ("KL1",))  # KL2 boards at the second reading
    state, changes = feed_pairs(pairs)
    assert [c.rule_id for c in changes] == ["cold-chain-exposure", "cold-chain-exposure"]
    opened, resolved = changes
    # 4 min per opening: the total reaches 15 min 3 min into the fourth opening (minute 33)
    assert (opened.opening, opened.at, resolved.opening, resolved.at) == (True, T0 + 33 * MINUTE, False,
                                                                          T0 + 50 * MINUTE)
    assert opened.subject_id == f"VAN-001/CHILLED/trip-{T0}"
    assert opened.evidence["trip_start"] == str(T0) and opened.evidence["exposure_min"] == "15.0"
    assert opened.evidence["orders"] == "KL1,KL2" and opened.evidence["max_c"] == "7.5"
    assert opened.evidence["first_breach_at"] == str(T0)
    assert resolved.evidence["exposure_min"] == "20.0" and resolved.evidence["trip_end"] == str(T0 + 50 * MINUTE)
    assert opened.message == ("CHILLED compartment of VAN-001 spent 15.0 min outside 0..4 °C on the trip started at "
                              "2026-06-01T06:00:00.000Z (orders KL1,KL2)")
    assert state is not None and state["trip"]["end"] == T0 + 50 * MINUTE
    assert state["trip"]["exposure_ms"] == 20 * MINUTE  # kept after the trip
    # the next trip starts from zero and has its own alert id
    later = series(60, 80, 7.5)
    state, more = feed(later, state=state)
    assert state is not None and state["trip"]["start"] == T0 + 60 * MINUTE
    assert {c.subject_id for c in more if c.rule_id == "cold-chain-exposure"} == {
        f"VAN-001/CHILLED/trip-{T0 + 60 * MINUTE}"}


def test_no_trip_no_exposure() -> None:
    state, changes = feed(series(0, 60, 7.0, every=6.0), on_board=())
    assert changes == [] and state is not None and state["trip"] is None


def test_duplicates_and_out_of_order_readings_change_nothing() -> None:
    first = reading(0, 8.0)
    state, _ = step(None, first, RULES, ORDERS)
    assert step(state, dict(first), RULES, ORDERS) == (state, [])
    assert step(state, reading(-1, 2.0), RULES, ()) == (state, [])
    second, _ = step(state, reading(1, 8.0), RULES, ORDERS)
    assert second["last_at"] == T0 + MINUTE and state["last_at"] == T0  # the input state is not modified


def test_state_is_plain_json_and_round_trips() -> None:
    readings = series(0, 5, 2.5) + series(5, 30, 9.0) + series(30, 35, 2.5)
    state: dict[str, Any] | None = None
    direct: list[AlertChange] = []
    via_json: list[AlertChange] = []
    stored: dict[str, Any] | None = None
    for r in readings:
        previous, snapshot = state, copy.deepcopy(state)
        state, decided = step(previous, r, RULES, ORDERS)
        assert orjson.loads(orjson.dumps(state)) == state
        assert previous == snapshot  # never modified in place
        direct += decided
        stored_out, decided_json = step(stored, r, RULES, ORDERS)
        stored = orjson.loads(orjson.dumps(stored_out))
        via_json += decided_json
    # the breach opens (at 5) and resolves (at 30); the exposure opens (at 20), its trip goes on
    assert direct == via_json
    assert [(c.rule_id, c.opening, (c.at - T0) // MINUTE) for c in direct] == [
        ("cold-chain-breach", True, 5), ("cold-chain-exposure", True, 20), ("cold-chain-breach", False, 30)]


def test_warehouse_rooms_are_subjects_too() -> None:
    room = [reading(m, 9.0, vehicle_id=None, warehouse_id="WH-BJ-CY-01", device_id="SEN-WH-01") for m in range(12)]
    _, changes = feed(room, on_board=())
    assert [(c.subject_kind, c.subject_id) for c in changes] == [("warehouse", "WH-BJ-CY-01/CHILLED")]


_temps = st.sampled_from([-20.0, -1.0, 0.0, 2.5, 4.0, 4.5, 9.0])
_boards = st.sampled_from([(), ("KL1",), ("KL1", "KL2")])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8 * 60), _temps, _boards), min_size=1, max_size=60),
       st.lists(st.integers(0, 59), max_size=30), st.randoms(use_true_random=False))
def test_duplicated_readings_give_the_same_alerts(rows: list[tuple[int, float, tuple[str, ...]]], dups: list[int],
                                                  rnd: Any) -> None:
    """The caller sorts by (event time, event id); a reading delivered twice is taken once."""
    pairs: Feed = []
    at = T0
    for gap_s, celsius, boarded in rows:
        at += gap_s * 1000
        pairs.append((reading((at - T0) / MINUTE, celsius), boarded))
    noisy = pairs + [(dict(pairs[i % len(pairs)][0]), pairs[i % len(pairs)][1]) for i in dups]
    rnd.shuffle(noisy)
    noisy.sort(key=lambda pair: (pair[0]["event_time"], pair[0]["event_id"]))
    state, changes = feed_pairs(pairs)
    state_noisy, changes_noisy = feed_pairs(noisy)
    assert changes_noisy == changes and state_noisy == state
    assert book_of(changes_noisy) == book_of(changes)
