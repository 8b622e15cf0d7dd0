"""Geofence transitions per driver: hysteresis, dwell, late and reordered pings, customer sites."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.geofence import step
from tests.unit.projections.geofence_builders import CTX, CUSTOMER, MIN, T0, WH, S, east_of, inputs, ping, van_order


def run(records: list[dict[str, Any]], batch: int = 1000, state: dict | None = None) -> tuple[list, dict, list]:
    transitions, late = [], []
    for i in range(0, len(records), batch):
        out = step(state, inputs(records[i:i + batch]), CTX)
        state = out.state
        transitions += out.transitions
        late += out.late
    assert state is not None
    return transitions, state, late


def kinds(transitions: list[dict]) -> list[tuple[str, str, int]]:
    return [(t["fence_id"], t["kind"], t["at"]) for t in transitions]


def track(metres: list[float], point: tuple[float, float] = WH, start: int = 0) -> list[dict]:
    """One ping every 10 s at these distances east of ``point``."""
    return [ping(start + n, *east_of(point, m)) for n, m in enumerate(metres)]


def tail(n: int = 6, start: int = 100) -> list[dict]:
    """Pings far away that move the driver's clock past everything before (release)."""
    return track([9000] * n, start=start)


def test_enter_needs_two_points_and_is_dated_at_the_first() -> None:
    t, _, _ = run(track([900, 150, 100, 50]) + tail())
    assert kinds(t) == [("WH-1", "ENTER", T0 + 10 * S), ("WH-1", "EXIT", T0 + 1000 * S)]
    assert t[0]["transition_id"] == f"DRV-1/WH-1/ENTER/{T0 + 10 * S}"
    assert t[0]["fence_kind"] == "WAREHOUSE" and t[0]["warehouse_id"] == "WH-1" and t[0]["fence_version"] == "test.1"
    assert t[0]["ping_event_id"] == "p2"  # the second in-ping decided it
    assert t[1]["entered_at"] == T0 + 10 * S


def test_jitter_at_the_border_does_not_flap() -> None:
    # the driver waits at the gate: pings alternate between just inside (190 m) and the band (230 m)
    t, _, _ = run(track([190, 230, 190, 230, 190, 230, 190, 230, 190, 230]))
    assert [k for _, k, _ in kinds(t)] == []  # never two consecutive in-pings: no ENTER
    t, _, _ = run(track([150, 150] + [230, 190] * 10 + [240, 210]))
    assert [k for _, k, _ in kinds(t)] == ["ENTER"]  # in, then jitter in the band: no EXIT


def test_single_out_ping_does_not_exit() -> None:
    t, _, _ = run(track([100, 100, 100, 400, 100, 100, 100]))
    assert [k for _, k, _ in kinds(t)] == ["ENTER"]


def test_dwell_fires_once_per_visit_and_not_early_after_reentry() -> None:
    # in for 2 min, out, back in: dwell (5 min) counts from the second ENTER
    metres = [100] * 12 + [900, 900] + [100] * 36
    t, _, _ = run(track(metres) + tail(start=200))
    got = kinds(t)
    assert [k for _, k, _ in got] == ["ENTER", "EXIT", "ENTER", "DWELL", "EXIT"]
    second_enter = got[2][2]
    assert got[3][2] == second_enter + 5 * MIN
    assert t[3]["entered_at"] == second_enter


def test_polygon_no_go_zone_single_point_enter() -> None:
    inside = east_of((39.905, 116.41), -100)
    t, _, _ = run([ping(0, *inside), *tail()])
    assert kinds(t)[:1] == [("NOGO-1", "ENTER", T0)]


def test_late_ping_is_dead_lettered_not_applied() -> None:
    pings = track([900, 100, 100, 100, 100, 100, 100])
    _, state, _ = run(pings)
    old = ping(99, *east_of(WH, 900), at=T0 + 5 * S)  # far behind the released time
    out = step(state, inputs([old]), CTX)
    assert out.transitions == [] and len(out.late) == 1
    assert "older than driver DRV-1's newest ping" in out.late[0][1]
    assert out.state["late"] == 1


def test_a_late_ping_is_late_in_any_batching() -> None:
    """Lateness is judged on arrival against the newest ping so far, so a ping far behind is late
    whether it comes in the same batch as the newer pings or in a batch of its own."""
    pings = [*track([900, 100, 100, 100, 100, 100, 100]), ping(99, *east_of(WH, 900), at=T0 + 5 * S)]
    for batch in (1, 3, len(pings)):
        t, state, late = run(pings, batch=batch)
        assert len(late) == 1 and state["late"] == 1, batch
        assert [k for _, k, _ in kinds(t)] == ["ENTER"]


def test_duplicates_are_ignored() -> None:
    pings = track([900, 100, 100, 100, 100, 100])
    once, _, _ = run(pings)
    twice, _, _ = run([p for p in pings for _ in (0, 1)])
    assert kinds(once) == kinds(twice)


def test_nothing_released_before_the_allowed_lateness() -> None:
    t, state, _ = run(track([100, 100]))
    assert t == [] and len(state["buf"]) == 2  # newest ping is the clock: both still wait


def test_customer_site_arrival_dwell_and_leaving_after_delivery() -> None:
    assignment = van_order(at=T0 - MIN)
    approach = track([2000, 800, 300, 120, 60, 30] + [20] * 20, point=CUSTOMER)
    delivered = van_order("DELIVERED", version=9, at=T0 + 20 * 10 * S)
    leave = track([400, 900, 3000, 6000, 9000, 9000], point=CUSTOMER, start=26)
    t, state, _ = run([assignment, *approach, delivered, *leave], batch=5)
    got = [(k["fence_id"], k["kind"]) for k in t]
    assert got == [("customer-site/KL-1", "ENTER"), ("customer-site/KL-1", "DWELL"), ("customer-site/KL-1", "EXIT")]
    assert t[0]["order_id"] == "KL-1" and t[0]["fence_kind"] == "CUSTOMER_SITE" and t[0]["at"] == T0 + 3 * 10 * S
    assert t[2]["fence_version"] == "order-v9"
    assert state["sites"] == {}  # delivered and left: forgotten


def test_off_board_site_is_dropped_without_transitions() -> None:
    t, state, _ = run([van_order(at=T0 - MIN), van_order("OFF_BOARD", version=8, at=T0), *tail(start=0)])
    assert t == [] and state["sites"] == {}


def _scenario() -> list[dict]:
    rnd = random.Random(3)
    metres = [rnd.choice([20, 120, 180, 210, 240, 260, 600]) for _ in range(80)]
    return track(metres) + tail(start=100)


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=40))
def test_reordering_within_the_allowed_lateness_changes_nothing(rnd: random.Random, batch: int) -> None:
    pings = _scenario()
    expected, _, _ = run(pings)
    shuffled = list(pings)
    # swap neighbours whose times differ by less than the allowed lateness (30 s = 3 pings)
    for i in range(len(shuffled) - 2):
        j = i + rnd.randint(0, 2)
        if abs(shuffled[j]["event_time"] - shuffled[i]["event_time"]) < 30 * S:
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    got, _, late = run(shuffled, batch=batch)
    assert late == []
    assert got == expected
