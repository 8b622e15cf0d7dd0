"""The funnel's time per status (service.funnel): which statuses an order entered and left, from its view's
latest-time-only stages, on folded order stories of every ending; the summary's medians and counts."""

from __future__ import annotations

from typing import Any

import pytest

from projections.order_state import fold_all
from projections.order_status import TERMINAL, OrderStatus
from service import funnel
from simulator.events import MINUTE, T0, Event, order_story

S = OrderStatus


def view_of(events: list[Event]) -> dict[str, Any]:
    (state,) = fold_all(events)[0].values()
    return state["view"]


def at(events: list[Event], event_type: str, nth: int = -1) -> int:
    return int([e["event_time"] for t, e in events if t == event_type][nth])


def test_the_state_machine_gives_the_entries_and_successors() -> None:
    assert funnel.ENTERED_BY_STAGE["dispatched"] is S.DELIVERING and funnel.ENTERED_BY_STAGE["refused"] is S.RETURNING
    assert "stock_checked" not in funnel.ENTERED_BY_STAGE and "weighed" not in funnel.ENTERED_BY_STAGE  # no status
    assert funnel.SUCCESSORS[S.PAID] == {S.PICKING, S.OUT_OF_STOCK, S.CANCELLED}
    assert funnel.SUCCESSORS[S.EXCEPTION_HANDLING] == {S.DELIVERING, S.RETURNING, S.CLAIMING}
    assert all(not funnel.SUCCESSORS[s] for s in TERMINAL)
    assert set(funnel.FUNNEL_ORDER) == set(OrderStatus) and len(funnel.FUNNEL_ORDER) == len(OrderStatus)


def test_a_signed_order_left_every_status_of_the_main_path() -> None:
    events = order_story("KLF1", T0)
    got = dict(funnel.durations(view_of(events)))
    assert got == {S.CREATED: at(events, "PaymentConfirmed") - at(events, "OrderCreated"),
                   S.PAID: at(events, "PickingStarted") - at(events, "PaymentConfirmed"),
                   S.PICKING: at(events, "OrderDispatched") - at(events, "PickingStarted"),
                   S.DELIVERING: at(events, "OrderDelivered") - at(events, "OrderDispatched")}
    assert all(ms > 0 for ms in got.values())


def test_a_redispatched_order_counts_its_exception_and_last_leg_but_not_its_lost_first_dispatch() -> None:
    events = order_story("KLF2", T0, ending="redispatched")
    view = view_of(events)
    assert view["dispatch_count"] == 2
    got = funnel.durations(view)
    assert dict(got) == {S.CREATED: at(events, "PaymentConfirmed") - at(events, "OrderCreated"),
                         S.PAID: at(events, "PickingStarted") - at(events, "PaymentConfirmed"),
                         S.EXCEPTION_HANDLING: at(events, "OrderDispatched") - at(events, "ExceptionReported"),
                         S.DELIVERING: at(events, "OrderDelivered") - at(events, "OrderDispatched")}
    assert len(got) == 4  # PICKING: its dispatch time was overwritten, so it is not counted


def test_branches_out_of_stock_cancelled_and_refused() -> None:
    oos = order_story("KLF3", T0, ending="out_of_stock")
    view = view_of(oos)
    assert view["status"] == "OUT_OF_STOCK" and funnel.went_out_of_stock(view)
    assert [s for s, _ in funnel.entries(view)] == [S.CREATED, S.PAID, S.OUT_OF_STOCK]
    assert dict(funnel.durations(view))[S.PAID] == at(oos, "StockChecked") - at(oos, "PaymentConfirmed")
    cancelled = order_story("KLF4", T0, ending="cancelled")
    assert dict(funnel.durations(view_of(cancelled))) == {
        S.CREATED: at(cancelled, "PaymentConfirmed") - at(cancelled, "OrderCreated"),
        S.PAID: at(cancelled, "OrderCancelled") - at(cancelled, "PaymentConfirmed")}
    refused = order_story("KLF5", T0, ending="refused")
    got = dict(funnel.durations(view_of(refused)))
    assert got[S.DELIVERING] == at(refused, "DeliveryRefused") - at(refused, "OrderDispatched")
    assert S.RETURNING not in got  # still returning: not left yet
    signed = view_of(order_story("KLF6", T0))
    assert not funnel.went_out_of_stock(signed)  # a partial shortage is not out of stock


def test_a_stage_newer_than_its_successor_and_ties_follow_the_state_machine() -> None:
    view = {"stages": {"created": T0, "paid": T0, "stock_checked": T0 + MINUTE, "picking_started": T0 + 2 * MINUTE,
                       "exception_reported": T0 + 3 * MINUTE, "dispatched": T0 + 9 * MINUTE}, "dispatch_count": 1,
            "lines": [{"available": 1.0, "short": 0.0}]}
    assert funnel.entries(view)[:2] == [(S.CREATED, T0), (S.PAID, T0)]  # a tie keeps the path's order
    assert dict(funnel.durations(view)) == {S.CREATED: 0, S.PAID: 2 * MINUTE,  # PICKING -> EXCEPTION: not legal
                                            S.EXCEPTION_HANDLING: 6 * MINUTE}


def test_the_summary_has_every_status_with_nearest_rank_medians() -> None:
    samples = [(S.CREATED, ms) for ms in (4, 1, 3, 2)] + [("PAID", 10)]
    stages = funnel.stage_summary(samples)
    assert [s["stage"] for s in stages] == [s.value for s in funnel.FUNNEL_ORDER]
    by = {s["stage"]: s for s in stages}
    assert by["CREATED"] == {"stage": "CREATED", "medianMs": 2, "p90Ms": 4, "orders": 4}
    assert by["PAID"] == {"stage": "PAID", "medianMs": 10, "p90Ms": 10, "orders": 1}
    assert by["SIGNED"] == {"stage": "SIGNED", "medianMs": None, "p90Ms": None, "orders": 0}


def test_counts_newest_and_active() -> None:
    counts = funnel.all_counts({"PAID": 3, "SIGNED": 1})
    assert list(counts) == [s.value for s in OrderStatus] and counts["PAID"] == 3 and counts["CREATED"] == 0
    ids = {f"KL20260601{n:04d}" for n in range(1, 11)} | {"KL202606020001"}
    assert funnel.newest(ids, 3) == ["KL202606020001", "KL202606010010", "KL202606010009"]
    assert [s.value for s in OrderStatus if funnel.active(s)] == [
        "CREATED", "PAID", "OUT_OF_STOCK", "PICKING", "DELIVERING", "EXCEPTION_HANDLING", "RETURNING", "CLAIMING"]


@pytest.mark.parametrize("ending", ["signed", "redispatched", "refused", "cancelled", "out_of_stock"])
def test_every_counted_pair_is_a_legal_transition_with_a_non_negative_time(ending: str) -> None:
    view = view_of(order_story("KLF7", T0, ending=ending))
    seq = funnel.entries(view)
    assert seq[-1][0].value == view["status"]  # the last status entered is the current one
    for status, ms in funnel.durations(view):
        assert ms >= 0 and status.value != view["status"]
