"""Percentiles, windows and rates of the load test's samples."""

import math

import pytest

from bench.load.stats import cpu_share, drained_at, latencies, mean_rate, pct, rates, windows


def test_pct_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert pct(values, 0.5) == 50
    assert pct(values, 0.99) == 99
    assert pct(values, 1.0) == 100
    assert pct([7.0], 0.99) == 7.0
    assert math.isnan(pct([], 0.5))


def test_windows_group_by_wall_time() -> None:
    points = [(100.0 + i, float(i)) for i in range(30)]
    w = windows(points, 100.0, 10.0)
    assert [start for start, _, _ in w] == [0.0, 10.0, 20.0]
    assert [n for _, _, n in w] == [10, 10, 10]
    assert w[1][1] == [14.0, 19.0]  # p50, p99 of 10..19


def test_latencies_count_the_missing() -> None:
    seen, missing = latencies([{"ms": 1.0}, {"ms": None}, {"ms": 3.0}])
    assert seen == [1.0, 3.0] and missing == 1


def samples() -> list[dict]:
    out = []
    for i in range(11):
        t = 1000.0 + i if i < 6 else 1005.0 + (i - 5) * 2.0  # uneven spacing
        out.append({"t": t, "produced": {"gps": 100 * (t - 1000)}, "lag": {"a": max(50 - 10 * i, 0), "b": 0},
                    "procs": {"worker-1": {"rss_mib": 100.0, "cpu_s": 0.5 * (t - 1000)}}})
    return out


def test_rates_and_mean_rate_are_per_second_whatever_the_spacing() -> None:
    s = samples()
    assert all(v == pytest.approx(100) for _, v in rates(s, ("produced", "gps")))
    assert mean_rate(s, ("produced", "gps"), 1000, 1020) == pytest.approx(100)
    assert math.isnan(mean_rate(s, ("produced", "gps"), 2000, 3000))
    assert all(v == pytest.approx(0.5) for _, v in cpu_share(s, "worker-1"))


def test_drained_at_is_the_first_sample_with_no_lag_after_a_time() -> None:
    s = samples()
    assert drained_at(s, 1000.0, threshold=0) == 1005.0
    assert drained_at(s, 1005.5, threshold=0) == 1007.0
    assert drained_at(s[:3], 1000.0, threshold=0) is None
    assert drained_at(s, 1000.0, threshold=30) == 1002.0
    assert drained_at(s, 1000.0, threshold=0, group="b") == 1000.0


def test_alert_results_pair_the_probe_times() -> None:
    from bench.load.probes import alert_results

    due = {"a": (1000.0, 50.0), "b": (1001.0, 51.0), "c": (1002.0, 52.0)}
    seen = {"a": 50.2, "b": 51.5}
    arrived = {"a": 50.25}
    alerts, hooks = alert_results(due, seen, arrived)
    assert [round(x["ms"], 3) if x["ms"] is not None else None for x in alerts] == [200.0, 500.0, None]
    assert [x["t"] for x in alerts] == [1000.0, 1001.0, 1002.0]
    assert [round(x["ms"], 3) if x["ms"] is not None else None for x in hooks] == [50.0, None]
    assert hooks[0]["t"] == pytest.approx(1000.2)
