"""The replenishment formulas (models.replenishment), table-driven against hand-computed values."""

from __future__ import annotations

import math

import pytest

from models.replenishment import (
    Forecast,
    PolicyParams,
    business_day,
    day_start_ms,
    forecast,
    plan,
    plan_from_history,
    round_up,
    suggested_quantity,
    z_score,
)


@pytest.mark.parametrize(("level", "z"), [(0.5, 0.0), (0.8413, 1.0), (0.95, 1.6449), (0.98, 2.0537),
                                          (0.99, 2.3263)])
def test_z_of_service_level(level: float, z: float) -> None:
    assert z_score(level) == pytest.approx(z, abs=1e-3)


@pytest.mark.parametrize(("daily", "window", "mean", "std", "days"), [
    ([10.0], 7, 10.0, 0.0, 1),
    ([8.0, 12.0], 7, 10.0, math.sqrt(8.0), 2),
    ([100.0, 2.0, 4.0, 6.0], 3, 4.0, 2.0, 3),  # only the window counts
    ([0.0, 0.0, 9.0], 28, 3.0, math.sqrt(27.0), 3),  # days without demand are zeros
])
def test_forecast_is_mean_and_sample_std_of_the_window(daily: list[float], window: int, mean: float, std: float,
                                                       days: int) -> None:
    fc = forecast(daily, window)
    assert fc is not None
    assert (fc.mean, fc.std, fc.days) == (pytest.approx(mean), pytest.approx(std), days)


def test_forecast_without_history_is_none() -> None:
    assert forecast([], 7) is None
    with pytest.raises(ValueError, match="window"):
        forecast([1.0], 0)


@pytest.mark.parametrize(("mean", "std", "level", "lead", "review", "ltd", "safety", "rop", "out"), [
    # LTD = mean*L; SS = z*std*sqrt(L); s = LTD + SS; S = s + mean*R
    (100.0, 20.0, 0.5, 1.0, 1.0, 100.0, 0.0, 100.0, 200.0),
    (100.0, 20.0, 0.8413447, 1.0, 1.0, 100.0, 20.0, 120.0, 220.0),
    (100.0, 20.0, 0.8413447, 4.0, 1.0, 400.0, 40.0, 440.0, 540.0),
    (50.0, 10.0, 0.97724987, 2.0, 3.0, 100.0, 2.0 * 10.0 * math.sqrt(2.0), 100.0 + 20.0 * math.sqrt(2.0),
     250.0 + 20.0 * math.sqrt(2.0)),
    (30.0, 0.0, 0.99, 1.0, 1.0, 30.0, 0.0, 30.0, 60.0),  # no variability: no safety stock
])
def test_plan_formulas(mean: float, std: float, level: float, lead: float, review: float, ltd: float, safety: float,
                       rop: float, out: float) -> None:
    p = plan(Forecast(mean, std, 28), PolicyParams(service_level=level, lead_time_days=lead, review_days=review))
    assert p.lead_time_demand == pytest.approx(ltd)
    assert p.safety_stock == pytest.approx(safety, abs=1e-4)
    assert p.reorder_point == pytest.approx(rop, abs=1e-4)
    assert p.order_up_to == pytest.approx(out, abs=1e-4)


def test_plan_needs_min_history() -> None:
    params = PolicyParams(min_history_days=3, history_days=5)
    assert plan_from_history([1.0, 2.0], params) is None
    p = plan_from_history([50.0, 1.0, 2.0, 3.0, 4.0, 5.0], params)  # the first day is outside the window
    assert p is not None and p.forecast.mean == pytest.approx(3.0) and p.forecast.days == 5


@pytest.mark.parametrize(("qty", "unit", "expected"), [(0.0, "KG", 0.0), (-3.0, "KG", 0.0), (2.01, "KG", 2.5),
                                                       (2.5, "KG", 2.5), (2.6, "KG", 3.0), (2.01, "PIECE", 3.0),
                                                       (3.0, "PIECE", 3.0)])
def test_round_up_to_the_units_step(qty: float, unit: str, expected: float) -> None:
    assert round_up(qty, unit) == expected


@pytest.mark.parametrize(("position", "expected"), [(101.0, 0.0), (100.0, 100.0), (50.0, 150.0), (-5.0, 205.0)])
def test_suggested_quantity_orders_up_to_s_at_or_below_the_reorder_point(position: float, expected: float) -> None:
    p = plan(Forecast(100.0, 20.0, 28), PolicyParams(service_level=0.5))  # s = 100, S = 200
    assert suggested_quantity(p, position, "KG") == expected


def test_business_day_is_the_beijing_calendar_day() -> None:
    midnight_beijing = 1_780_243_200_000  # 2026-06-01 00:00 +08:00
    day = business_day(midnight_beijing)
    assert business_day(midnight_beijing - 1) == day - 1
    assert business_day(midnight_beijing + 86_400_000 - 1) == day
    assert day_start_ms(day) == midnight_beijing


@pytest.mark.parametrize("kw", [{"service_level": 1.0}, {"service_level": 0.3}, {"lead_time_days": 0},
                                {"min_history_days": 30}, {"min_history_days": 0}])
def test_params_are_checked(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PolicyParams(**kw)  # type: ignore[arg-type]
