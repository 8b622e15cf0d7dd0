"""GPS pings and cold-chain sensor readings: plausible, consistent with the orders, countable excursions."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from typing import Any

import pytest

from simulator.geo import bearing_deg, haversine_m, in_city
from simulator.sensors import EXCURSION_THRESHOLD_C
from simulator.traffic import SimulationConfig, event_log

Record = tuple[str, dict[str, Any]]


@pytest.fixture(scope="module")
def log() -> list[Record]:
    return event_log(SimulationConfig(seed=21, orders=300, sensor_excursion_per_hour=1.0))


def pings_by_driver(log: list[Record]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t, r in log:
        if t == "GpsPing":
            out[r["driver_id"]].append(r)
    return out


def point(r: dict[str, Any]) -> tuple[float, float]:
    return r["lat"], r["lng"]


def test_pings_stay_in_beijing_at_plausible_speeds(log: list[Record]) -> None:
    moving = 0
    for pings in pings_by_driver(log).values():
        for a, b in itertools.pairwise(pings):
            assert in_city(point(a)) and in_city(point(b))
            dt = (b["event_time"] - a["event_time"]) / 1000
            assert dt > 0
            assert haversine_m(point(a), point(b)) / dt * 3.6 < 80
        for r in pings:
            assert 0 <= r["heading_deg"] < 360 and r["accuracy_m"] is not None and 3 <= r["accuracy_m"] <= 15
            # free flow 15-45 km/h, slowed by traffic and rain (simulator.conditions) down to a crawl
            assert r["speed_kmh"] == 0 or 2 <= r["speed_kmh"] <= 55
            moving += r["speed_kmh"] > 0
    assert moving > 1000


def test_reported_speed_and_heading_match_the_movement(log: list[Record]) -> None:
    ratios, heading_errors = [], []
    for pings in pings_by_driver(log).values():
        for a, b in itertools.pairwise(pings):
            dt = (b["event_time"] - a["event_time"]) / 1000
            dist = haversine_m(point(a), point(b))
            if a["speed_kmh"] > 0 and dt <= 5 and dist > 30:
                ratios.append(dist / dt * 3.6 / a["speed_kmh"])
                heading_errors.append(abs((bearing_deg(point(a), point(b)) - a["heading_deg"] + 180) % 360 - 180))
    assert 0.9 < statistics.median(ratios) < 1.1
    assert statistics.median(heading_errors) < 5
    assert sorted(heading_errors)[int(0.9 * len(heading_errors))] < 20


def test_pings_come_every_gps_interval_while_driving(log: list[Record]) -> None:
    gaps = [b["event_time"] - a["event_time"]
            for pings in pings_by_driver(log).values() for a, b in itertools.pairwise(pings) if a["speed_kmh"] > 0]
    assert statistics.mode(gaps) == 5_000
    assert min(gaps) >= 2_500


def test_the_van_is_at_the_door_when_the_order_is_delivered(log: list[Record]) -> None:
    driver, destination, last_fix = {}, {}, {}
    checked = 0
    for t, r in log:
        if t == "OrderCreated":
            destination[r["order_id"]] = r["delivery_address"]["location"]
        elif t == "OrderDispatched":
            driver[r["order_id"]] = r["driver_id"]
        elif t == "GpsPing":
            last_fix[r["driver_id"]] = r
        elif t == "OrderDelivered":
            fix = last_fix[driver[r["order_id"]]]
            dest = destination[r["order_id"]]
            assert fix["speed_kmh"] == 0
            assert haversine_m(point(fix), (dest["lat"], dest["lng"])) < 30
            assert r["event_time"] - fix["event_time"] < 30 * 60_000  # two orders for one restaurant: served in turn
            checked += 1
    assert checked > 200


def test_sensor_readings_are_chilled_with_humidity(log: list[Record]) -> None:
    readings = [r for t, r in log if t == "SensorReading"]
    devices = {r["device_id"] for r in readings}
    assert {r["vehicle_id"] for r in readings if r["vehicle_id"]} and {r["warehouse_id"] for r in readings
                                                                      if r["warehouse_id"]}
    assert len(devices) == 30 + 3 * 2
    for r in readings:
        assert 80 <= r["humidity_pct"] <= 95
        assert (r["vehicle_id"] is None) != (r["warehouse_id"] is None)
        if r["compartment"] == "CHILLED":
            assert 0 <= r["temperature_c"] <= 12.7
        else:
            assert -22 <= r["temperature_c"] <= -7.5
    chilled = [r["temperature_c"] for r in readings if r["compartment"] == "CHILLED"]
    assert sum(0 <= x <= 4 for x in chilled) / len(chilled) > 0.8
    per_device: dict[str, list[int]] = defaultdict(list)
    for r in readings:
        per_device[r["device_id"]].append(r["event_time"])
    for times in per_device.values():
        assert {b - a for a, b in itertools.pairwise(times)} == {30_000}


def test_excursions_happen_at_the_configured_rate(log: list[Record]) -> None:
    """Runs of chilled readings above 5 °C: one per excursion, about 1 per device-hour of normal running."""
    hot: dict[str, bool] = {}
    excursions = normal = 0
    peaks: list[float] = []
    for t, r in log:
        if t != "SensorReading" or r["compartment"] != "CHILLED":
            continue
        is_hot = r["temperature_c"] > EXCURSION_THRESHOLD_C
        if is_hot and not hot.get(r["device_id"]):
            excursions += 1
            peaks.append(r["temperature_c"])
        elif is_hot:
            peaks[-1] = max(peaks[-1], r["temperature_c"])
        normal += r["temperature_c"] <= 4.5
        hot[r["device_id"]] = is_hot
    expected = 1.0 * normal * 30 / 3600  # configured 1 per device-hour outside excursions
    assert 0.75 * expected < excursions < 1.25 * expected, (excursions, expected)
    assert max(peaks) >= 8  # some compressor failures reach 8-12 °C

