"""models.route_evaluation: metrics read from a log, the comparison table, a short end-to-end comparison."""

from __future__ import annotations

from typing import Any

import pytest

from models.route_evaluation import (
    RunMetrics,
    compare,
    handovers,
    km_driven,
    measure,
    route_report_section,
    table,
    trips,
)
from projections.geo import haversine_m

T0 = 1_780_293_600_000
MIN = 60_000


def _created(oid: str, start: int, end: int) -> tuple[str, dict[str, Any]]:
    return "OrderCreated", {"order_id": oid, "event_time": T0, "delivery_window_start": start,
                            "delivery_window_end": end}


def _log() -> list[tuple[str, dict[str, Any]]]:
    return [
        _created("A", T0 + 60 * MIN, T0 + 120 * MIN),
        _created("B", T0 + 60 * MIN, T0 + 120 * MIN),
        _created("C", T0 + 60 * MIN, T0 + 120 * MIN),
        _created("D", T0 + 60 * MIN, T0 + 120 * MIN),
        ("OrderDispatched", {"order_id": "A", "driver_id": "DRV-1", "event_time": T0 + 10 * MIN}),
        ("OrderDispatched", {"order_id": "B", "driver_id": "DRV-1", "event_time": T0 + 10 * MIN}),
        ("OrderDispatched", {"order_id": "C", "driver_id": "DRV-2", "event_time": T0 + 10 * MIN}),
        ("GpsPing", {"driver_id": "DRV-1", "event_time": T0 + 11 * MIN, "lat": 39.90, "lng": 116.40, "speed_kmh": 30}),
        ("GpsPing", {"driver_id": "DRV-2", "event_time": T0 + 11 * MIN, "lat": 39.80, "lng": 116.40, "speed_kmh": 30}),
        ("GpsPing", {"driver_id": "DRV-1", "event_time": T0 + 12 * MIN, "lat": 39.91, "lng": 116.40, "speed_kmh": 30}),
        ("GpsPing", {"driver_id": "DRV-2", "event_time": T0 + 12 * MIN, "lat": 39.80, "lng": 116.41, "speed_kmh": 0}),
        ("OrderDelivered", {"order_id": "A", "event_time": T0 + 50 * MIN}),  # early
        ("DeliveryRefused", {"order_id": "B", "event_time": T0 + 130 * MIN}),  # 10 min late
        ("ExceptionReported", {"order_id": "C", "event_time": T0 + 150 * MIN, "reason_code": "TRAFFIC_ACCIDENT"}),
        ("ExceptionReported", {"order_id": "C", "event_time": T0 + 160 * MIN, "reason_code": "GOODS_DAMAGED"}),
        ("OrderDelivered", {"order_id": "C", "event_time": T0 + 170 * MIN}),  # not the first door event
        # D is never handed over.
    ]


def test_handovers_take_the_first_door_event() -> None:
    doors = handovers(_log())
    assert doors == {"A": (T0 + 50 * MIN, T0 + 60 * MIN, T0 + 120 * MIN),
                     "B": (T0 + 130 * MIN, T0 + 60 * MIN, T0 + 120 * MIN),
                     "C": (T0 + 160 * MIN, T0 + 60 * MIN, T0 + 120 * MIN)}


def test_distance_and_trips() -> None:
    expected = (haversine_m(39.90, 116.40, 39.91, 116.40) + haversine_m(39.80, 116.40, 39.80, 116.41)) / 1000
    assert km_driven(_log()) == pytest.approx(expected)
    assert trips(_log()) == 2


def test_measure_lateness() -> None:
    m = measure(_log(), legs=[])
    assert (m.handed_over, m.late, m.early) == (3, 2, 1)
    assert m.late_min_total == pytest.approx(50.0)
    assert m.late_min_mean == pytest.approx(50 / 3)
    assert m.late_min_p90 == pytest.approx(40.0)
    only = measure(_log(), orders={"A", "B", "D"}, legs=[])
    assert (only.handed_over, only.late, only.late_min_total) == (2, 1, 10.0)


def test_table_shows_both_runs_and_the_difference() -> None:
    a = RunMetrics(100.0, 80.0, 10, 50, 10, 200.0, 4.0, 12.0, 5)
    b = RunMetrics(95.0, 76.0, 10, 50, 5, 100.0, 2.0, 6.0, 4)
    md = table(a, b)
    assert "| km driven (all GPS) | 100 | 95 | -5 | -5.0% |" in md
    assert "| handed over after window end | 10 | 5 | -5 | -50.0% |" in md


@pytest.fixture(scope="module")
def short_day() -> dict[str, Any]:
    return {"orders_per_hour": 5.0, "n_drivers": 6}  # one short day: 120 orders


def test_compare_one_short_day(short_day: dict[str, Any]) -> None:
    c = compare(5, 1, **short_day)
    assert c.nearest.handed_over == c.planned.handed_over > 100  # the same orders, handed over in both runs
    assert c.nearest.km_driven > 0 and c.planned.km_driven > 0
    assert c.travel.road_factor > 1.0 and c.fit["mae_s"] < c.fit_default["mae_s"]


def test_report_section(short_day: dict[str, Any]) -> None:
    title, md = route_report_section(5, 1, calm=False, **short_day)
    assert "OR-Tools" in title
    assert md.count("| km driven (all GPS) |") == 1 and "Planned vs nearest" in md
