"""models.travel_times: legs to customers from GPS + order events, fitted TravelTimes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.travel_times import MIN_LEGS, customer_legs, fit_travel_times, learn_travel_times, leg_errors
from projections.geo import haversine_m
from projections.routing import TravelTimes
from simulator.traffic import SimulationConfig, event_log

T0 = 1_780_293_600_000  # 14:00 Beijing
HOUR = 3_600_000
NORTH_3KM = 3000 / 111_195  # degrees of latitude


def _ping(driver: str, at: int, lat: float, lng: float, speed: float) -> tuple[str, dict[str, Any]]:
    return "GpsPing", {"driver_id": driver, "event_time": at, "lat": lat, "lng": lng, "speed_kmh": speed}


def _synthetic_log(legs_per_hour: int = 10) -> list[tuple[str, dict[str, Any]]]:
    """One van driving 3 km north per leg: 36 km/h around 14:00 Beijing, 18 km/h around 20:00; each leg ends
    at a customer who signs 4 min later. Then a drive home (no customer) and a hand-over far from any drive."""
    log: list[tuple[str, dict[str, Any]]] = []
    lat, lng = 39.80, 116.40
    n = 0
    for base, kmh in ((T0, 36.0), (T0 + 6 * HOUR, 18.0)):
        at = base
        for _ in range(legs_per_hour):
            n += 1
            oid = f"KL{n:04d}"
            log.append(("OrderDispatched", {"order_id": oid, "driver_id": "DRV-1", "event_time": at}))
            duration_ms = round(3000 / (kmh / 3.6) * 1000)
            for t in range(0, duration_ms + 1, 10_000):
                f = t / duration_ms
                log.append(_ping("DRV-1", at + t, lat + f * NORTH_3KM, lng, kmh))
            if duration_ms % 10_000:
                log.append(_ping("DRV-1", at + duration_ms, lat + NORTH_3KM, lng, 0.0))
            else:
                log[-1] = _ping("DRV-1", at + duration_ms, lat + NORTH_3KM, lng, 0.0)
            lat += NORTH_3KM
            door = at + duration_ms + 4 * 60_000
            log.append(("OrderDelivered", {"order_id": oid, "event_time": door, "location": {"lat": lat, "lng": lng}}))
            at = door + 60_000
            lat -= 2 * NORTH_3KM if lat > 39.95 else 0.0
    home_at = T0 + 12 * HOUR
    log += [_ping("DRV-1", home_at + t, 39.80 + t / 600_000 * 0.01, 116.40, 30.0) for t in range(0, 600_000, 10_000)]
    log.append(_ping("DRV-1", home_at + 600_000, 39.81, 116.40, 0.0))
    log.append(("OrderDispatched", {"order_id": "KL-FAR", "driver_id": "DRV-1", "event_time": home_at}))
    log.append(("OrderDelivered", {"order_id": "KL-FAR", "event_time": home_at + 700_000,
                                   "location": {"lat": 39.90, "lng": 116.50}}))
    log.sort(key=lambda r: r[1]["event_time"])
    return log


def test_customer_legs_from_a_synthetic_log() -> None:
    legs = customer_legs(_synthetic_log())
    assert len(legs) == 20  # the drive home and the far-away hand-over are not legs
    assert {leg.order_id for leg in legs} == {f"KL{i:04d}" for i in range(1, 21)}
    for leg in legs:
        assert leg.straight_m == pytest.approx(3000, rel=0.01)
        assert leg.driven_m == pytest.approx(leg.straight_m, rel=1e-6)
    assert [round(leg.duration_s) for leg in legs[:2]] == [300, 300]
    assert round(legs[-1].duration_s) == 600


def test_fit_recovers_speeds_by_hour() -> None:
    tt = learn_travel_times(_synthetic_log(), min_legs=2)  # 4-6 legs start in each hour driven
    assert tt.road_factor == pytest.approx(1.0)
    assert tt.speed_kmh[14] == pytest.approx(36.0, rel=0.01)
    assert tt.speed_kmh[20] == pytest.approx(18.0, rel=0.01)
    assert tt.speed_kmh[3] == pytest.approx(27.0, rel=0.01)  # no legs then: the overall median
    assert tt.band_factors == (1.0, 1.0, 1.0)  # every leg is in one band
    assert TravelTimes.from_json(orjson.loads(orjson.dumps(tt.to_json()))) == tt


def test_too_few_legs_give_the_defaults() -> None:
    legs = customer_legs(_synthetic_log())
    assert fit_travel_times(legs[: MIN_LEGS - 1]) == TravelTimes()


@pytest.fixture(scope="module")
def sim_logs() -> tuple[list, list]:
    small = {"orders": 160, "sensor_interval_s": 3600.0, "gps_interval_s": 10.0}
    return event_log(SimulationConfig(seed=3, **small)), event_log(SimulationConfig(seed=3, start=T0 + 86_400_000,
                                                                                   **small))


def test_legs_from_the_simulator_match_hand_overs(sim_logs: tuple[list, list]) -> None:
    log = sim_logs[0]
    legs = customer_legs(log)
    delivered = {r["order_id"]: r for t, r in log if t == "OrderDelivered"}
    carrier = {r["order_id"]: r["driver_id"] for t, r in log if t == "OrderDispatched"}
    assert len(legs) >= 0.9 * len(delivered)
    for leg in legs:
        assert leg.driver_id == carrier[leg.order_id] and leg.duration_s > 0
        if leg.order_id in delivered:
            where = delivered[leg.order_id]["location"]
            assert haversine_m(*leg.end, where["lat"], where["lng"]) <= 250


def test_learnt_times_beat_the_defaults_on_another_day(sim_logs: tuple[list, list]) -> None:
    history, later = sim_logs
    tt = learn_travel_times(history)
    assert tt == learn_travel_times(history)  # a pure function of the log
    assert 1.1 < tt.road_factor < 1.6
    held_out = customer_legs(later)
    assert leg_errors(held_out, tt)["mae_s"] < 0.8 * leg_errors(held_out, TravelTimes())["mae_s"]
