"""The load test's traffic mix and schedule arithmetic (docs/load.md)."""

import pytest

from bench.load.mix import Schedule, city_mix


def test_the_seed_city_at_5000_events_per_second() -> None:
    mix = city_mix(5000)
    assert mix.vans == 20_000
    assert mix.gps_per_s == 2_000  # 20,000 vans / 10 s
    assert mix.sensors_per_s == pytest.approx(20_000 * 2 / 15)  # every van refrigerated, 2 compartments / 15 s
    rest = 5_000 - 2_000 - 20_000 * 2 / 15
    assert mix.order_events_per_s == pytest.approx(rest * 10 / 13)
    assert mix.stock_per_s == pytest.approx(rest * 3 / 13)
    assert mix.total_per_s == pytest.approx(5_000)
    assert mix.shares()["gps"] == pytest.approx(0.4)


def test_another_rate_scales_the_city_and_keeps_the_shares() -> None:
    small, big = city_mix(1000), city_mix(5000)
    assert small.vans == 4_000
    assert small.total_per_s == pytest.approx(1000)
    for k, v in big.shares().items():
        assert small.shares()[k] == pytest.approx(v, rel=1e-3)
    with pytest.raises(ValueError, match="rate"):
        city_mix(0)


def test_the_burst_runs_the_city_clock_faster() -> None:
    s = Schedule(steady_s=600, burst_s=60, burst_factor=3)
    assert s.wall_s == 660 and s.city_s == 780
    assert s.wall_at(300) == 300
    assert s.wall_at(600 + 90) == pytest.approx(630)
    assert s.wall_at(780) == pytest.approx(660)
    assert s.expected_events(city_mix(5000)) == pytest.approx(5000 * 600 + 15_000 * 60)
    assert [s.phase(t) for t in (0, 599, 600, 659, 660)] == ["steady", "steady", "burst", "burst", "drain"]
