"""VanOrder records follow an order on and off vans, once per move."""

from __future__ import annotations

from typing import Any

import pytest

from projections.order_state import fold
from projections.van_orders import van_order_records
from schemas.codec import AvroCodec
from simulator.events import order_story


def records_of(ending: str) -> list[dict[str, Any]]:
    state, out = None, []
    for event_type, event in order_story("KL-9", ending=ending):
        before = state["view"] if state else None
        state = fold(state, event_type, event).state
        out += van_order_records(before, state["view"])
    return out


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["driver_id"], r["state"], r["dispatch_count"]) for r in records]


def test_signed_order_is_on_board_then_delivered() -> None:
    recs = records_of("signed")
    assert summary(recs) == [("DRV-001", "ON_BOARD", 1), ("DRV-001", "DELIVERED", 1)]
    assert recs[0]["vehicle_id"] and recs[0]["destination"]["lat"] and recs[0]["weight_kg"] > 0
    assert recs[1]["order_version"] > recs[0]["order_version"]
    AvroCodec().encode("VanOrder", recs[0])  # a valid record of the contract


def test_redispatch_moves_the_order_between_vans() -> None:
    assert summary(records_of("redispatched")) == [
        ("DRV-001", "ON_BOARD", 1), ("DRV-001", "OFF_BOARD", 2), ("DRV-002", "ON_BOARD", 2),
        ("DRV-002", "DELIVERED", 2)]


@pytest.mark.parametrize(("ending", "expected"), [
    ("refused", [("DRV-001", "ON_BOARD", 1), ("DRV-001", "OFF_BOARD", 1)]),
    ("cancelled", []), ("out_of_stock", []),
])
def test_orders_that_never_reach_the_customer(ending: str, expected: list) -> None:
    assert summary(records_of(ending)) == expected


def test_refolding_the_same_view_emits_nothing() -> None:
    state = None
    for event_type, event in order_story("KL-9"):
        state = fold(state, event_type, event).state
    assert state is not None
    assert van_order_records(state["view"], state["view"]) == []
