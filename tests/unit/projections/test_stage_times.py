"""Stage times of an order from its van's geofences (``projections.stage_times``), inside the per-driver
fold: arrived at the warehouse, arrived at and left the customer, published in the order's ``OrderEta``.

Pings every 10 s (``ping(n)`` is at T0 + n * 10 s), allowed lateness 30 s, an ETA every 30 s of event time.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from projections.eta import DistanceSpeedEta
from projections.geofence import GeoContext, step
from projections.stage_times import ARRIVAL_ESTIMATOR, FIELDS
from projections.van_eta import EtaSettings
from tests.unit.projections.geofence_builders import CTX as NO_ETA_CTX
from tests.unit.projections.geofence_builders import CUSTOMER, FENCES, T0, WH, S, east_of, inputs, ping, van_order

CTX = GeoContext(FENCES, allowed_lateness_ms=30 * S, eta=EtaSettings(DistanceSpeedEta()))
DISPATCH_AT = T0 + 55 * S
ARRIVED_WAREHOUSE = T0  # first in-ping of the warehouse visit the van is in at dispatch
ARRIVED_CUSTOMER = T0 + 17 * 10 * S  # first in-ping (100 m) of the customer site
LEFT_CUSTOMER = T0 + 31 * 10 * S  # first out-ping (400 m)
TO_CUSTOMER = [2000, 1600, 1200, 800, 400, 100, 50] + [20] * 12 + [400, 800, 2000, 3000, 4000, 5000, 6000, 7000]


def at(n: int, point: tuple[float, float], metres: float, **kw: Any) -> dict[str, Any]:
    return ping(n, *east_of(point, metres), **kw)


def story(route: list[float] = TO_CUSTOMER, dispatch_at: int = DISPATCH_AT) -> list[dict[str, Any]]:
    """The van waits in the warehouse (ENTER at T0), the order is put on it at 55 s, it leaves at 120 s,
    drives to the customer, stays, leaves; the last pings move the clock past everything before."""
    records = [at(n, WH, 0) for n in range(12)]
    records.insert(6, van_order(at=dispatch_at))
    return records + [at(12 + k, CUSTOMER, m) for k, m in enumerate(route)]


def run(records: list[dict[str, Any]], batch: int = 1000, ctx: GeoContext = CTX,
        state: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], list]:
    etas: list[dict[str, Any]] = []
    late: list = []
    for i in range(0, len(records), batch):
        out = step(state, inputs(records[i:i + batch]), ctx)
        state = out.state
        etas += out.etas
        late += out.late
    assert state is not None
    return etas, state, late


def stages(record: dict[str, Any]) -> tuple[int | None, ...]:
    return tuple(record[f] for f in FIELDS)


def firsts(etas: list[dict[str, Any]]) -> dict[str, int]:
    """When each stage first appeared in a published record (its ``updated_at``)."""
    seen: dict[str, int] = {}
    for e in etas:
        for f in FIELDS:
            if e[f] is not None:
                seen.setdefault(f, e["updated_at"])
    return seen


def changes(etas: list[dict[str, Any]]) -> int:
    """How many records changed the stage times (from none before the first)."""
    return sum(a != b for a, b in itertools.pairwise([(None, None, None)] + [stages(e) for e in etas]))


def test_warehouse_then_customer_arrival_then_leaving() -> None:
    etas, _, late = run(story())
    assert late == [] and etas and changes(etas) == 3
    assert {e["order_id"] for e in etas} == {"KL-1"} and {e["dispatch_count"] for e in etas} == {1}
    assert stages(etas[-1]) == (ARRIVED_WAREHOUSE, ARRIVED_CUSTOMER, LEFT_CUSTOMER)
    # the first estimate after the dispatch already carries the warehouse arrival
    assert stages(etas[0]) == (ARRIVED_WAREHOUSE, None, None)
    assert etas[0]["computed_at"] == T0 + 60 * S
    # each stage goes out as soon as it is decided: the 2nd in-ping, the 2nd out-ping
    assert firsts(etas) == {"arrived_warehouse_at": T0 + 60 * S, "arrived_customer_at": ARRIVED_CUSTOMER + 10 * S,
                            "left_customer_at": LEFT_CUSTOMER + 10 * S}
    # once set, a stage time never moves; updated_at only grows and is never before the estimate
    for f in FIELDS:
        assert len({e[f] for e in etas} - {None}) == 1, f
    times = [e["updated_at"] for e in etas]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(e["updated_at"] >= e["computed_at"] for e in etas)


def test_leaving_is_published_without_a_new_estimate_and_keeps_the_last_one() -> None:
    etas, _, _ = run(story())
    before, left = etas[-2], etas[-1]
    assert left["left_customer_at"] == LEFT_CUSTOMER and before["left_customer_at"] is None
    assert left["updated_at"] == LEFT_CUSTOMER + 10 * S  # decided by the second out-ping
    estimate = ("eta", "computed_at", "distance_m", "stops_before", "speed_kmh", "estimator", "driver_id", "vehicle_id")
    assert {k: left[k] for k in estimate} == {k: before[k] for k in estimate}
    assert left["computed_at"] < left["updated_at"]


def test_van_entering_the_warehouse_after_the_dispatch() -> None:
    """Dispatched while the van is away: the next ENTER of its warehouse's fence while the order is on board."""
    records = [van_order(at=T0 - 30 * S), *[at(n, WH, m) for n, m in enumerate([3000, 2000, 900, 100, 50, 50, 50])],
               *[at(7 + k, CUSTOMER, m) for k, m in enumerate([5000, 4000, 3000, 3000, 3000])]]
    etas, _, _ = run(records)
    assert etas[-1]["arrived_warehouse_at"] == T0 + 30 * S
    assert stages(etas[0]) == (None, None, None)  # estimates before it carry no stage
    assert firsts(etas)["arrived_warehouse_at"] == T0 + 40 * S


def test_another_warehouse_is_not_the_orders() -> None:
    records = [van_order(at=T0 - 30 * S), *[at(n, WH, 0) for n in range(8)]]
    records[0] = {**records[0], "warehouse_id": "WH-2"}
    etas, state, _ = run(records)
    assert etas and all(stages(e) == (None, None, None) for e in etas)
    assert "stages" not in state["sites"]["KL-1"]


def test_jitter_at_the_border_does_not_move_the_times() -> None:
    """The van waits at the customer's gate: pings alternate between inside (140 m) and the band (200-240 m)."""
    jitter = [2000, 1000, 400, 140, 120] + [200, 140, 240, 140, 200, 230, 140] * 3 + [400, 800, 4000, 5000, 6000, 7000]
    etas, _, _ = run(story(jitter))
    arrived = T0 + 15 * 10 * S
    left = T0 + (12 + 5 + 21) * 10 * S
    assert stages(etas[-1]) == (ARRIVED_WAREHOUSE, arrived, left)
    assert {e["arrived_customer_at"] for e in etas} == {None, arrived}
    assert {e["left_customer_at"] for e in etas} == {None, left}
    assert changes(etas) == 3  # warehouse (with the first estimate), arrival, leaving: the jitter adds none


def test_a_second_visit_in_the_same_dispatch_does_not_move_the_times() -> None:
    route = [800, 100, 50, 50, 50, 900, 900, 100, 50, 50, 900, 900, 4000, 5000, 6000, 7000]
    etas, _, _ = run(story(route))
    assert stages(etas[-1]) == (ARRIVED_WAREHOUSE, T0 + 13 * 10 * S, T0 + 17 * 10 * S)


def test_a_redispatch_starts_fresh_stage_times() -> None:
    """The same van gets the order again (dispatch 2, after an exception) on the way to the customer:
    the warehouse arrival belonged to dispatch 1; the customer arrival counts for dispatch 2."""
    records = story()
    records.insert(16, van_order(version=9, at=T0 + 135 * S, dispatch=2))  # after the warehouse EXIT (120 s)
    etas, _, _ = run(records)
    one = [e for e in etas if e["dispatch_count"] == 1]
    two = [e for e in etas if e["dispatch_count"] == 2]
    assert one and two and etas.index(two[0]) > etas.index(one[-1])
    assert all(e["arrived_warehouse_at"] == ARRIVED_WAREHOUSE for e in one)
    assert stages(two[0]) == (None, None, None)  # the first estimate of the dispatch is published at once
    assert stages(two[-1]) == (None, ARRIVED_CUSTOMER, LEFT_CUSTOMER)


def test_a_redispatch_while_in_the_warehouse_takes_that_visit() -> None:
    records = story()
    records.insert(10, van_order(version=9, at=T0 + 85 * S, dispatch=2))
    etas, _, _ = run(records)
    assert stages(etas[-1]) == (ARRIVED_WAREHOUSE, ARRIVED_CUSTOMER, LEFT_CUSTOMER)
    assert etas[-1]["dispatch_count"] == 2


def test_a_late_ping_beyond_the_lateness_sets_no_stage() -> None:
    """The van drove on; two pings from the customer's door arrive a minute after newer ones: dead letters."""
    far = [at(12 + k, CUSTOMER, m) for k, m in enumerate([3000, 3500, 4000, 4500, 5000, 5500, 6000, 6500])]
    etas, state, _ = run(story([]) + far)
    door = [at(90 + k, CUSTOMER, 20, at=T0 + (13 + k) * 10 * S) for k in range(3)]
    more, state, late = run([*door, at(30, CUSTOMER, 7000)], state=state)
    assert len(late) == 3
    assert all(stages(e)[1:] == (None, None) for e in etas + more)
    assert (state["sites"]["KL-1"].get("stages") or {}).get("arrived_customer_at") is None


def test_pings_within_the_lateness_in_any_order_and_batching_give_the_same_records() -> None:
    records = story()
    expected, _, _ = run(records)
    swapped = list(records)
    for i in range(0, len(swapped) - 1, 3):  # neighbours 10 s apart: well within the 30 s lateness
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    for batch in (1, 4, 7):
        got, _, late = run(swapped, batch=batch)
        assert late == [] and got == expected, batch


def test_duplicates_do_not_re_emit() -> None:
    records = story()
    once, _, _ = run(records)
    twice, _, _ = run([r for r in records for _ in (0, 1)], batch=5)
    assert twice == once
    # the whole story again on the state it made: pings are duplicates or late, van orders already known
    _, state, _ = run(records)
    again, _, _ = run(records[-10:], state=state)
    assert again == []


def test_no_estimate_before_leaving_publishes_the_observed_arrival() -> None:
    """Dispatched a moment before the van reaches the customer; in and out between two ETA ticks."""
    tick = T0 + 30 * S
    records = [at(0, CUSTOMER, 5000, at=T0), at(1, CUSTOMER, 5000, at=tick), van_order(at=tick + 1 * S),
               at(2, CUSTOMER, 20, at=tick + 5 * S), at(3, CUSTOMER, 20, at=tick + 10 * S),
               at(4, CUSTOMER, 900, at=tick + 15 * S), at(5, CUSTOMER, 900, at=tick + 20 * S),
               *[at(6 + k, CUSTOMER, 5000, at=tick + (60 + 30 * k) * S) for k in range(3)]]
    etas, _, _ = run(records)
    assert len(etas) == 1
    e = etas[0]
    assert e["estimator"] == ARRIVAL_ESTIMATOR and e["eta"] == e["computed_at"] == tick + 5 * S
    assert stages(e) == (None, tick + 5 * S, tick + 15 * S) and e["updated_at"] == tick + 20 * S
    assert (e["distance_m"], e["stops_before"], e["speed_kmh"]) == (0.0, 0, None)


def test_taken_off_the_van_before_arriving_publishes_nothing_more() -> None:
    records = story()
    records.insert(14, van_order("OFF_BOARD", version=9, at=T0 + 115 * S))
    etas, state, _ = run(records)
    assert etas and all(e["updated_at"] <= T0 + 115 * S for e in etas)
    assert state["sites"] == {}


@pytest.mark.parametrize("route", [TO_CUSTOMER, []], ids=["visit", "no-visit"])
def test_without_etas_no_tracking_records(route: list[float]) -> None:
    etas, state, _ = run(story(route), ctx=NO_ETA_CTX)
    assert etas == [] and not state.get("stages_due")


def test_the_input_state_is_not_modified() -> None:
    records = story()
    _, state, _ = run(records[:20])
    before = copy.deepcopy(state)
    out = step(state, inputs(records[20:]), CTX)
    assert state == before
    assert stages(out.etas[-1]) == (ARRIVED_WAREHOUSE, ARRIVED_CUSTOMER, LEFT_CUSTOMER)


def test_a_van_parked_in_the_yard_since_the_day_before_did_not_arrive_for_this_order() -> None:
    """The visit the van is in at dispatch began more than MAX_VISIT_MS (6 h) before: not this order's arrival;
    the warehouse stage waits for the next ENTER (none here), the customer stages are dated as usual."""
    from projections.stage_times import MAX_VISIT_MS

    late_dispatch = T0 + MAX_VISIT_MS + 60 * S
    records = [at(n, WH, 0) for n in range(12)] + [at(0, WH, 0, at=late_dispatch - 20 * S, eid="wake-1"),
                                                   at(0, WH, 0, at=late_dispatch - 10 * S, eid="wake-2")]
    records.append(van_order(at=late_dispatch))
    records += [at(0, CUSTOMER, m, at=late_dispatch + (k + 1) * 10 * S, eid=f"c{k}") for k, m in enumerate(TO_CUSTOMER)]
    etas, _, late = run(records)
    assert late == [] and etas
    last = etas[-1]
    assert last["arrived_warehouse_at"] is None
    assert last["arrived_customer_at"] is not None and last["left_customer_at"] is not None
