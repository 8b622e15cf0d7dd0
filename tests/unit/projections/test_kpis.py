"""Table-driven tests of every KPI formula (``projections.kpis``, ``docs/kpis.md``)."""

from __future__ import annotations

from typing import Any

import pytest

from projections.kpis import (
    beijing_day,
    contribution,
    day_start_ms,
    figures,
    latest,
    nearest_rank,
    order_facts,
    window_key,
    window_keys,
)

WS = 1_780_300_800_000  # 2026-06-01T08:00:00Z = 16:00 Beijing
WE = WS + 2 * 3_600_000
H = 3_600_000


def line(no: int, ordered: float, picked: float | None = None, kg: float | None = None,
         delivered: float | None = None, returned: float = 0.0) -> dict[str, Any]:
    return {"line_no": no, "sku": f"SKU-{no}", "name": "x", "unit": "KG", "ordered": ordered, "available": ordered,
            "short": 0.0, "picked": picked, "expected_kg": kg, "measured_kg": kg, "delivered": delivered,
            "returned": returned}


def view(status: str = "SIGNED", stages: dict[str, int] | None = None, lines: list[dict[str, Any]] | None = None,
         driver: str | None = "DRV-1", version: int = 9, window_start: int = WS, window_end: int = WE,
         **over: Any) -> dict[str, Any]:
    stages = {"created": WS - 5 * H, "packed": WS - H, "dispatched": WS, "delivered": WS + H} if stages is None \
        else stages
    return {"order_id": "KL1", "customer_id": "C-1", "warehouse_id": "WH-1", "status": status, "version": version,
            "updated_at": max(stages.values(), default=WS), "stages": stages,
            "lines": [line(1, 5.0, 5.0, 5.0, 5.0)] if lines is None else lines,
            "delivery_window_start": window_start, "delivery_window_end": window_end,
            "driver": None if driver is None else {"driver_id": driver, "vehicle_id": "VAN-1"}, **over}


def c(v: dict[str, Any], exposures: int = 0) -> dict[str, Any]:
    return contribution(order_facts(v), exposures)


@pytest.mark.parametrize("at, day", [
    (WS, "2026-06-01"),  # 16:00 Beijing
    (1_780_243_200_000 - 1, "2026-05-31"),  # 2026-05-31T15:59:59.999Z = 23:59:59.999 Beijing
    (1_780_243_200_000, "2026-06-01"),  # 2026-05-31T16:00Z = Beijing midnight
])
def test_day_is_the_beijing_date_of_the_window_start(at: int, day: str) -> None:
    assert beijing_day(at) == day
    assert order_facts(view(window_start=at, window_end=at + H))["day"] == day
    assert day_start_ms(day) <= at < day_start_ms(day) + 86_400_000


@pytest.mark.parametrize("status, stages, decided", [
    ("SIGNED", {"packed": 1, "delivered": 2}, True),
    ("RETURNING", {"packed": 1, "refused": 2}, True),
    ("RETURNED", {"packed": 1, "refused": 2, "returned": 3}, True),
    ("OUT_OF_STOCK", {"stock_checked": 1}, True),
    ("CANCELLED", {"stock_checked": 1}, False),
    ("DELIVERING", {"packed": 1, "dispatched": 2}, False),
    ("EXCEPTION_HANDLING", {"packed": 1, "dispatched": 2, "exception_reported": 3}, False),
    ("CLAIMING", {"packed": 1, "delivered": 2, "claim_opened": 3}, True),
])
def test_which_orders_are_decided(status: str, stages: dict[str, int], decided: bool) -> None:
    assert order_facts(view(status=status, stages=stages))["decided"] is decided


@pytest.mark.parametrize("lines, stages, status, ordered, full", [
    ([line(1, 5.0, 5.0, 5.0, 5.0), line(2, 3.0, 3.0, 3.0, 3.0)], None, "SIGNED", 2, 2),
    ([line(1, 5.0, 5.0, 5.0, 4.5), line(2, 3.0, 3.0, 3.0, 3.0)], None, "SIGNED", 2, 1),  # one line short
    ([line(1, 5.0, 5.0, 5.0, 5.0), line(2, 3.0, 0.0, 0.0, 0.0)], None, "SIGNED", 2, 1),  # out of stock line
    ([line(1, 5.0, 5.0, 5.0), line(2, 3.0, 3.0, 3.0)], {"packed": 1, "refused": 2}, "RETURNING", 2, 0),
    ([line(1, 5.0), line(2, 3.0)], {"stock_checked": 1}, "OUT_OF_STOCK", 2, 0),
    ([line(1, 5.0), line(2, 3.0)], {"stock_checked": 1}, "CANCELLED", 0, 0),  # not decided: not counted
    ([line(1, 5.0, 5.0, 5.0)], {"packed": 1, "dispatched": 2}, "DELIVERING", 0, 0),  # in progress
])
def test_fulfilment_lines(lines: list[dict[str, Any]], stages: dict[str, int] | None, status: str, ordered: int,
                          full: int) -> None:
    got = c(view(status=status, stages=stages, lines=lines))
    assert (got["lines_ordered"], got["lines_full"]) == (ordered, full)


@pytest.mark.parametrize("delivered_at, on_time", [
    (WS + H, True), (WE, True), (WE + 1, False), (WS - H, True),  # early is on time (before the window end)
])
def test_on_time(delivered_at: int, on_time: bool) -> None:
    got = c(view(stages={"packed": WS - 2 * H, "delivered": delivered_at}))
    assert got["delivered"] and got["on_time"] is on_time


@pytest.mark.parametrize("stages, delivery_ms", [
    ({"packed": WS - H, "dispatched": WS - H + 1, "delivered": WS + H}, 2 * H - 1),
    ({"packed": WS - 5 * H, "dispatched": WS, "delivered": WS + 37 * 60_000}, 37 * 60_000),
    ({"packed": WS, "dispatched": WS, "refused": WS + H}, None),
    ({"packed": WS, "delivered": WS + H}, None),  # no dispatch recorded: no delivery time
])
def test_delivery_time_is_delivered_minus_dispatched(stages: dict[str, int], delivery_ms: int | None) -> None:
    status = "SIGNED" if "delivered" in stages else "RETURNING"
    assert c(view(status=status, stages=stages))["delivery_ms"] == delivery_ms


@pytest.mark.parametrize("values, p, expected", [
    ([], 50, None), ([7], 50, 7), ([7], 95, 7), ([1, 2], 50, 1), ([1, 2], 51, 2),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95, 10),
    ([15, 20, 35, 40, 50], 30, 20), ([15, 20, 35, 40, 50], 40, 20), ([15, 20, 35, 40, 50], 50, 35),
    ([15, 20, 35, 40, 50], 100, 50),
])
def test_nearest_rank_percentile(values: list[int], p: int, expected: int | None) -> None:
    assert nearest_rank(values, p) == expected


_DELIVERED = {"packed": WS - H, "delivered": WS + H}


@pytest.mark.parametrize("status, stages, lines, exposures, expected", [
    # delivered in full: nothing lost
    ("SIGNED", _DELIVERED, [line(1, 5.0, 5.0, 5.2, 5.0)], 0,
     {"scale_kg": 5.2, "short_kg": 0.0, "returned_kg": 0.0, "refused_kg": 0.0, "exposed_kg": 0.0, "lost_kg": 0.0}),
    # picked 4 (4.4 kg at the scale), delivered 3: a quarter of the weight lost between scale and delivery
    ("SIGNED", _DELIVERED, [line(1, 5.0, 4.0, 4.4, 3.0)], 0,
     {"scale_kg": 4.4, "short_kg": 1.1, "returned_kg": 0.0, "lost_kg": 1.1}),
    # delivered 5 of 5 (10 kg), 2 returned
    ("RETURNING", {**_DELIVERED, "return_started": WS + 2 * H}, [line(1, 5.0, 5.0, 10.0, 5.0, returned=2.0)], 0,
     {"scale_kg": 10.0, "short_kg": 0.0, "returned_kg": 4.0, "lost_kg": 4.0}),
    # refused: the whole scale weight
    ("RETURNING", {"packed": WS - H, "refused": WS + H}, [line(1, 5.0, 5.0, 5.0), line(2, 2.0, 2.0, 1.5)], 0,
     {"scale_kg": 6.5, "refused_kg": 6.5, "exposed_kg": 0.0, "lost_kg": 6.5}),
    # exposed on a trip: the whole scale weight, once, even with a short line
    ("SIGNED", _DELIVERED, [line(1, 5.0, 4.0, 4.0, 3.0)], 2,
     {"scale_kg": 4.0, "short_kg": 1.0, "exposed_kg": 4.0, "lost_kg": 4.0}),
    # exposed and refused: still the scale weight once
    ("RETURNING", {"packed": WS - H, "refused": WS + H}, [line(1, 5.0, 5.0, 5.0)], 1,
     {"refused_kg": 5.0, "exposed_kg": 5.0, "lost_kg": 5.0}),
    # exposure of an order still on the van counts once it is decided, not before
    ("DELIVERING", {"packed": WS - H, "dispatched": WS}, [line(1, 5.0, 5.0, 5.0)], 1,
     {"scale_kg": 0.0, "exposed_kg": 0.0, "lost_kg": 0.0}),
    # out of stock: nothing weighed, nothing lost
    ("OUT_OF_STOCK", {"stock_checked": WS - 3 * H}, [line(1, 5.0)], 0, {"scale_kg": 0.0, "lost_kg": 0.0}),
])
def test_loss_weights(status: str, stages: dict[str, int], lines: list[dict[str, Any]], exposures: int,
                      expected: dict[str, float]) -> None:
    got = c(view(status=status, stages=stages, lines=lines), exposures)
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_windows_of_an_order_and_of_one_not_dispatched() -> None:
    assert window_keys(order_facts(view())) == ["city|all|2026-06-01", "warehouse|WH-1|2026-06-01",
                                                "merchant|C-1|2026-06-01", "driver|DRV-1|2026-06-01"]
    assert window_keys(order_facts(view(driver=None, status="OUT_OF_STOCK"))) == [
        "city|all|2026-06-01", "warehouse|WH-1|2026-06-01", "merchant|C-1|2026-06-01"]
    with pytest.raises(ValueError, match="unknown KPI dimension"):
        window_key("region", "x", "2026-06-01")


def _entry(oid: str, v: dict[str, Any], exposures: int = 0, counted: bool = True) -> dict[str, Any]:
    return {**c({**v, "order_id": oid}, exposures), "counted": counted}


def test_window_figures_from_a_set_of_orders() -> None:
    full = view(lines=[line(1, 5.0, 5.0, 5.0, 5.0), line(2, 2.0, 2.0, 2.0, 2.0)],
                stages={"dispatched": WS, "delivered": WS + 30 * 60_000})
    short_late = view(lines=[line(1, 4.0, 4.0, 4.0, 2.0)], stages={"dispatched": WS, "delivered": WE + 1})
    refused = view(status="RETURNING", lines=[line(1, 1.0, 1.0, 1.0)], stages={"packed": WS, "refused": WS + H})
    oos = view(status="OUT_OF_STOCK", lines=[line(1, 3.0), line(2, 1.0)], stages={"stock_checked": WS})
    cancelled = view(status="CANCELLED", stages={"cancelled": WS})
    moving = view(status="DELIVERING", stages={"packed": WS, "dispatched": WS + 1})
    gone = view(stages={"packed": WS, "delivered": WS + 1})  # re-dispatched to another driver: left the window
    entries = {"A": _entry("A", full), "B": _entry("B", short_late), "C": _entry("C", refused),
               "D": _entry("D", oos), "E": _entry("E", cancelled), "F": _entry("F", moving),
               "G": _entry("G", gone, counted=False)}
    f = figures("driver|DRV-1|2026-06-01", entries)
    expected = {
        "dimension": "driver", "dimension_id": "DRV-1", "day": "2026-06-01", "day_start": 1_780_243_200_000,
        "orders": 6, "orders_decided": 4, "orders_cancelled": 1,
        "lines_ordered": 2 + 1 + 1 + 2, "lines_full": 2, "fulfilment_rate": round(2 / 6, 6),
        "delivered": 2, "on_time": 1, "on_time_rate": 0.5,
        "delivery_p50_ms": 30 * 60_000, "delivery_p90_ms": WE + 1 - WS, "delivery_p95_ms": WE + 1 - WS,
        "scale_kg": 7.0 + 4.0 + 1.0, "short_kg": 2.0, "refused_kg": 1.0, "returned_kg": 0.0, "exposed_kg": 0.0,
        "lost_kg": 3.0, "loss_rate": 0.25, "exposed_orders": 0,
    }
    assert {k: f[k] for k in expected} == expected


def test_empty_window_has_no_rates() -> None:
    f = figures("city|all|2026-06-01", {})
    assert (f["orders"], f["fulfilment_rate"], f["on_time_rate"], f["loss_rate"], f["delivery_p50_ms"]) == \
        (0, None, None, None, None)


def test_latest_keeps_the_highest_revision_per_order() -> None:
    old, new = _entry("A", view(version=5)), _entry("A", view(version=7))
    exposed = _entry("A", view(version=5), exposures=1)
    assert latest([new, old])["A"]["order_version"] == 7
    assert latest([old, exposed])["A"]["exposures"] == 1
    assert latest([exposed, new, old])["A"]["order_version"] == 7
