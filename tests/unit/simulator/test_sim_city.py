"""The simulated city, catalogue and routes."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from simulator.catalogue import CATALOGUE, draw_lines
from simulator.city import build_city
from simulator.geo import bearing_deg, haversine_m, in_city
from simulator.orders import beijing_date, order_id_for
from simulator.routes import MAX_KMH, MIN_KMH, plan_route
from simulator.traffic import SimulationConfig, city_for, sensor_devices


def test_city_is_deterministic_and_inside_the_fifth_ring() -> None:
    city = build_city(7, n_warehouses=3, n_restaurants=150, n_drivers=24)
    assert city == build_city(7, n_warehouses=3, n_restaurants=150, n_drivers=24)
    assert city != build_city(8, n_warehouses=3, n_restaurants=150, n_drivers=24)
    assert len(city.warehouses) == 3 and len(city.restaurants) == 150 and len(city.drivers) == 24
    for place in [*city.warehouses, *city.restaurants]:
        assert in_city(place.location)
    assert len({r.name for r in city.restaurants}) == 150
    assert len({r.customer_id for r in city.restaurants}) == 150
    assert len({r.district for r in city.restaurants}) >= 5


def test_people_and_vans_look_real() -> None:
    city = build_city(1)
    for r in city.restaurants:
        assert re.fullmatch(r"1[3-9]\d{9}", r.contact_phone)
        assert r.address.startswith("北京市" + r.district)
    for d in city.drivers:
        assert re.fullmatch(r"DRV-\d{3}", d.id) and re.fullmatch(r"京A·[0-9A-Z]{5}", d.plate)
        assert re.fullmatch(r"1[3-9]\d{9}", d.phone) and d.vehicle_id == "VAN-" + d.id[-3:]
    depots = Counter(d.warehouse_id for d in city.drivers)
    served = Counter(r.warehouse_id for r in city.restaurants)
    assert min(depots.values()) >= 2
    assert depots.most_common(1)[0][0] == served.most_common(1)[0][0]  # the busiest depot has most vans


def test_every_warehouse_room_and_van_has_a_sensor() -> None:
    city = city_for(SimulationConfig(n_warehouses=2, n_drivers=10))
    devices = sensor_devices(city)
    assert len(devices) == 2 * 2 + 10 and len({d.device_id for d in devices}) == len(devices)


@pytest.mark.parametrize("kw", [{"n_warehouses": 4}, {"n_warehouses": 3, "n_drivers": 5}, {"n_restaurants": 0}])
def test_city_rejects_impossible_sizes(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        build_city(1, **kw)


def test_catalogue() -> None:
    assert 28 <= len(CATALOGUE) <= 35 and len({p.sku for p in CATALOGUE}) == len(CATALOGUE)
    assert {p.category for p in CATALOGUE} == {"VEGETABLE", "FRUIT", "MEAT", "SEAFOOD", "DAIRY"}
    assert {p.unit for p in CATALOGUE} == {"KG", "PIECE"}
    for p in CATALOGUE:
        assert 100 <= p.price_cents <= 20_000 and p.piece_kg > 0
        assert p.unit == "PIECE" or p.piece_kg == 1.0
    rng = random.Random(3)
    for _ in range(200):
        lines = draw_lines(rng)
        assert 1 <= len(lines) <= 6 and [ln["line_no"] for ln in lines] == list(range(1, len(lines) + 1))
        assert len({ln["sku"] for ln in lines}) == len(lines) and all(ln["quantity"] > 0 for ln in lines)


def test_routes_are_piecewise_linear_at_urban_speeds() -> None:
    rng = random.Random(5)
    city = build_city(5)
    for _ in range(100):
        a, b = rng.sample(city.restaurants, 2)
        route = plan_route(rng, a.location, b.location)
        assert route.points[0] == a.location and route.points[-1] == b.location
        assert route.length_m >= haversine_m(a.location, b.location) - 1
        assert all(MIN_KMH <= v * 3.6 <= MAX_KMH for v in route.speeds_ms)
        assert all(in_city(p) for p in route.points)
        start, v0, h0 = route.at(0)
        end, _, _ = route.at(route.duration_s)
        assert start == a.location and haversine_m(end, b.location) < 0.01
        assert MIN_KMH <= v0 <= MAX_KMH
        assert abs((bearing_deg(route.points[0], route.points[1]) - h0 + 180) % 360 - 180) < 1e-9


def test_geo_and_ids() -> None:
    assert haversine_m((39.9, 116.4), (40.9, 116.4)) == pytest.approx(111_195, rel=1e-3)
    assert bearing_deg((39.9, 116.4), (40.0, 116.4)) == pytest.approx(0, abs=1e-6)
    assert bearing_deg((39.9, 116.4), (39.9, 116.5)) == pytest.approx(90, abs=0.1)
    assert order_id_for(beijing_date(1_780_293_600_000), 1) == "KL202606010001"  # 14:00 in Beijing
    assert beijing_date(1_780_293_600_000 + 10 * 3_600_000) == "20260602"  # midnight in Beijing
