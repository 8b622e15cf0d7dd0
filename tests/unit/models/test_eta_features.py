"""models.features: one row per stop, cumulative along the route, only what is known at the van's fix."""

from __future__ import annotations

import math

import pytest

from models.features import FEATURES, beijing_hour, beijing_weekday, feature_rows
from projections.eta import DistanceSpeedEta, Stop, VanSnapshot
from projections.geo import haversine_m

AT = 1_780_272_000_000  # 2026-06-01 08:00 Beijing, a Monday
COL = {name: i for i, name in enumerate(FEATURES)}


def van(**extra: float | int | None) -> VanSnapshot:
    return VanSnapshot("DRV-001", 39.90, 116.40, AT, 7.0, **extra)  # type: ignore[arg-type]


STOPS = [Stop("A", 39.91, 116.40, window_start=AT - 600_000, window_end=AT + 3_600_000, kg=12.5,
              dispatched_at=AT - 1_200_000),
         Stop("B", 39.92, 116.41)]


def test_one_row_per_stop_with_cumulative_road_distance_and_the_baseline() -> None:
    rows = feature_rows(van(), STOPS)
    assert [len(r) for r in rows] == [len(FEATURES)] * 2
    leg1 = haversine_m(39.90, 116.40, 39.91, 116.40) * 1.35
    leg2 = haversine_m(39.91, 116.40, 39.92, 116.41) * 1.35
    assert rows[0][COL["road_m"]] == pytest.approx(leg1)
    assert rows[1][COL["road_m"]] == pytest.approx(leg1 + leg2)
    assert rows[1][COL["leg_m"]] == pytest.approx(leg2)
    assert rows[1][COL["straight_m"]] == pytest.approx(haversine_m(39.90, 116.40, 39.92, 116.41))
    assert [r[COL["stops_before"]] for r in rows] == [0.0, 1.0]
    baseline = DistanceSpeedEta().estimate(van(), STOPS)
    for row, eta in zip(rows, baseline, strict=True):
        assert row[COL["baseline_s"]] == pytest.approx((eta.eta - AT) / 1000, abs=0.001)


def test_window_dispatch_and_van_extras_relative_to_the_fix_time() -> None:
    rows = feature_rows(van(load_kg=80.0, traffic_index=1.7, rain_mm_h=4.0, driver_pace=1.2, stops_total=5), STOPS)
    a = rows[0]
    assert a[COL["window_end_s"]] == 3600.0 and a[COL["window_start_s"]] == -600.0
    assert a[COL["since_dispatch_s"]] == 1200.0 and a[COL["stop_kg"]] == 12.5
    assert (a[COL["load_kg"]], a[COL["traffic_index"]], a[COL["rain_mm_h"]], a[COL["driver_pace"]]) == (80, 1.7, 4, 1.2)
    assert a[COL["stops_total"]] == 5.0
    assert a[COL["hour"]] == 8.0 and a[COL["weekday"]] == 0.0
    assert a[COL["speed_kmh"]] == pytest.approx(25.2)


def test_unknown_values_are_nan_not_zero() -> None:
    rows = feature_rows(VanSnapshot("DRV-001", 39.9, 116.4, AT, None), STOPS)
    b = rows[1]
    for name in ("speed_kmh", "load_kg", "traffic_index", "rain_mm_h", "driver_pace", "window_end_s", "stop_kg",
                 "since_dispatch_s"):
        assert math.isnan(b[COL[name]]), name
    assert b[COL["stops_total"]] == 2.0  # the stops given when the fold does not say


def test_beijing_calendar() -> None:
    assert beijing_hour(AT) == 8.0 and beijing_weekday(AT) == 0
    assert beijing_hour(AT + 17 * 3_600_000) == 1.0 and beijing_weekday(AT + 17 * 3_600_000) == 1
    assert feature_rows(van(), []) == []
