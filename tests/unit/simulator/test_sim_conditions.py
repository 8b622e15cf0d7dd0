"""Weather and traffic (simulator.conditions): deterministic, plausible, and they really change travel times."""

from __future__ import annotations

import itertools
import statistics
import uuid
from typing import Any

import pytest

from simulator.conditions import CityConditions, beijing_weekday, slowdown
from simulator.config import SimulationConfig
from simulator.events import T0
from simulator.fleet import CONDITIONS_PRODUCER
from simulator.traffic import event_log

HOUR = 3_600_000
MIDNIGHT = T0 - 14 * HOUR  # 2026-06-01 00:00 Beijing, a Monday
CENTRE = (39.9087, 116.3975)


def test_conditions_are_a_pure_function_of_seed_time_and_place() -> None:
    a, b = CityConditions(5), CityConditions(5)
    times = [MIDNIGHT + k * 7 * 60_000 for k in range(0, 600, 37)]
    forward = [a.at(t, CENTRE) for t in times]
    assert [b.at(t, CENTRE) for t in reversed(times)] == forward[::-1]  # order of queries does not matter
    assert [CityConditions(6).at(t, CENTRE) for t in times] != forward


def test_weekday_rush_hours_weekend_quieter_nights_free() -> None:
    c = CityConditions(1, rain_scale=0.0)
    day = [statistics.fmean(c.at(MIDNIGHT + d * 24 * HOUR + h * HOUR).traffic_index for d in range(5))
           for h in range(24)]  # Monday..Friday, city-wide (no incidents)
    weekend = [statistics.fmean(c.at(MIDNIGHT + d * 24 * HOUR + h * HOUR).traffic_index for d in (5, 6))
               for h in range(24)]
    assert beijing_weekday(MIDNIGHT) == 0 and beijing_weekday(MIDNIGHT + 5 * 24 * HOUR) == 5
    assert day[3] < 1.05 and day[8] > 1.6 and day[18] > 1.6 and day[8] > day[11] > day[3]
    assert weekend[8] < day[8] - 0.3 and weekend[18] < day[18] - 0.3
    assert all(1.0 <= x < 3.0 for x in day + weekend)


def test_rain_episodes_slow_traffic_and_cool_the_air() -> None:
    c, dry = CityConditions(4), CityConditions(4, rain_scale=0.0)
    times = [MIDNIGHT + k * 10 * 60_000 for k in range(6 * 24 * 14)]  # two weeks
    wet = [t for t in times if c.rain_mm_h(t) > 2.0]
    assert 0.02 < len(wet) / len(times) < 0.4  # it rains some of the time, not always
    for t in wet[::20]:
        rainy, clear = c.at(t, CENTRE), dry.at(t, CENTRE)
        assert rainy.traffic_index > clear.traffic_index and rainy.temperature_c < clear.temperature_c
        assert slowdown(rainy) > rainy.traffic_index  # wet roads slow a van beyond the congestion
    temps = [c.at(t).temperature_c for t in times]
    assert min(temps) > 5 and max(temps) < 45  # a Beijing June


def test_busier_in_the_centre_and_incidents_are_local() -> None:
    c = CityConditions(2, rain_scale=0.0)
    edge = [(39.78, 116.23), (39.78, 116.57), (40.02, 116.23), (40.02, 116.57)]
    hours = [MIDNIGHT + d * 24 * HOUR + h * HOUR + m * 60_000 for d in range(7) for h in range(6, 23)
             for m in (0, 20, 40)]
    assert statistics.fmean(c.at(t, CENTRE).traffic_index for t in hours) > statistics.fmean(
        c.at(t, edge[0]).traffic_index for t in hours) + 0.1
    # only an incident nearby makes an edge of the city busier than its centre at the same moment
    jammed = {(t, p) for t in hours for p in edge if c.at(t, p).traffic_index > c.at(t, CENTRE).traffic_index}
    assert 0 < len(jammed) < 0.2 * len(hours) * len(edge)


def _deliveries(config: SimulationConfig) -> dict[str, int]:
    return {r["order_id"]: r["event_time"] for t, r in event_log(config) if t == "OrderDelivered"}


def _dispatched(config: SimulationConfig) -> dict[str, int]:
    return {r["order_id"]: r["event_time"] for t, r in event_log(config) if t == "OrderDispatched"}


def test_heavier_traffic_means_later_arrivals_same_seed() -> None:
    base = SimulationConfig(seed=8, orders=40, start=MIDNIGHT + 6 * HOUR, n_drivers=12, p_accident=0.0,
                            p_traffic_jam=0.0, sensor_interval_s=3600)
    free = _deliveries(SimulationConfig(**{**_fields(base), "conditions": False}))
    normal = _deliveries(base)
    heavy = _deliveries(SimulationConfig(**{**_fields(base), "traffic_scale": 2.0}))
    sent = _dispatched(base)
    common = sorted(free.keys() & normal.keys() & heavy.keys())
    assert len(common) > 25
    trip = {k: [d[o] - sent[o] for o in common] for k, d in (("free", free), ("normal", normal), ("heavy", heavy))}
    assert statistics.fmean(trip["free"]) < statistics.fmean(trip["normal"]) < statistics.fmean(trip["heavy"])
    later = sum(h > n for h, n in zip(trip["heavy"], trip["normal"], strict=True))
    assert later > 0.8 * len(common)


def _fields(config: SimulationConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def test_vans_report_road_conditions_while_driving() -> None:
    config = SimulationConfig(seed=8, orders=40, start=MIDNIGHT + 7 * HOUR, n_drivers=12, sensor_interval_s=3600)
    log = event_log(config)
    assert log == event_log(config)  # deterministic with conditions
    reports = [r for t, r in log if t == "RoadConditions"]
    pings: dict[str, list[int]] = {}
    vehicles: dict[str, str] = {}
    for t, r in log:
        if t == "GpsPing":
            pings.setdefault(r["driver_id"], []).append(r["event_time"])
            vehicles[r["driver_id"]] = r["vehicle_id"]
    assert len(reports) > 50
    c = CityConditions(config.seed)
    for r in reports:
        assert r["event_time"] in set(pings[r["driver_id"]])  # sent along with a ping of the drive
        assert r["producer"] == CONDITIONS_PRODUCER and r["vehicle_id"] == vehicles[r["driver_id"]]
        assert 1.0 <= r["traffic_index"] < 4.0 and r["rain_mm_h"] >= 0
        truth = c.at(r["event_time"])
        assert abs(r["temperature_c"] - truth.temperature_c) < 2.5
    gaps = []
    for driver in {r["driver_id"] for r in reports}:
        times = sorted(r["event_time"] for r in reports if r["driver_id"] == driver)
        gaps += [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0 and statistics.median(gaps) >= 300_000  # every 5 min while driving, again at departure
    ids = {r["event_id"] for r in reports}
    assert len(ids) == len(reports) and all(uuid.UUID(i).version == 5 for i in ids)
    assert not [t for t, _ in event_log(SimulationConfig(**{**_fields(config), "conditions": False}))
                if t == "RoadConditions"]


def test_conditions_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="conditions_interval_s"):
        SimulationConfig(conditions_interval_s=0)
    with pytest.raises(ValueError, match="traffic_scale"):
        CityConditions(1, traffic_scale=-1)
