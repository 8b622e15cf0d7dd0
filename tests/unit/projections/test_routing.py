"""projections.routing: travel-time model, plan_stops (OR-Tools) against nearest neighbour and brute force."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projections.routing as routing
from projections.eta import Stop, visit_order
from projections.geo import haversine_m
from projections.routing import TravelTimes, beijing_hour, plan_stops, walk

T0 = 1_780_293_600_000  # 2026-06-01 06:00 UTC = 14:00 Beijing
MIN = 60_000
DEPOT = (39.90, 116.40)
TT = TravelTimes(road_factor=1.3, speed_kmh=(30.0,) * 24, band_edges_m=(1000.0, 3000.0), band_factors=(0.6, 1.0, 1.2))


def _random_stops(rng: random.Random, n: int, windows: bool) -> list[Stop]:
    stops = []
    for i in range(n):
        start = T0 + rng.choice((0, 30)) * MIN if windows else None
        end = start + rng.choice((60, 90, 120)) * MIN if start is not None else None
        stops.append(Stop(f"KL{i:04d}", DEPOT[0] + rng.uniform(-0.05, 0.05), DEPOT[1] + rng.uniform(-0.07, 0.07),
                          start, end))
    return stops


def _cost(plan: routing.RoutePlan) -> float:
    return plan.travel_s + routing.LATE_WEIGHT * plan.late_s


# --- TravelTimes ---------------------------------------------------------------------------------

def test_beijing_hour_is_utc_plus_8() -> None:
    assert beijing_hour(T0) == 14
    assert beijing_hour(T0 + 10 * 3_600_000) == 0


def test_seconds_use_the_hour_of_departure_and_the_distance_band() -> None:
    speeds = tuple(10.0 if h == 8 else 40.0 for h in range(24))
    tt = TravelTimes(road_factor=1.0, speed_kmh=speeds, band_edges_m=(1000.0,), band_factors=(0.5, 1.0))
    a, b = (39.9, 116.4), (39.9 + 0.02, 116.4)  # ~2.2 km north
    straight = haversine_m(*a, *b)
    at_8 = T0 + 18 * 3_600_000  # 08:00 Beijing the next day
    assert tt.seconds(a, b, at_8) == pytest.approx(straight / (10 / 3.6))
    assert tt.seconds(a, b, T0) == pytest.approx(straight / (40 / 3.6))
    near = (39.9 + 0.005, 116.4)  # ~560 m: the slow short-hop band
    assert tt.seconds(a, near, T0) == pytest.approx(haversine_m(*a, *near) / (20 / 3.6))
    assert tt.band(999.9) == 0 and tt.band(1000.0) == 1


def test_json_round_trip() -> None:
    assert TravelTimes.from_json(orjson.loads(orjson.dumps(TT.to_json()))) == TT
    assert TravelTimes.from_json({}) == TravelTimes()
    with pytest.raises(ValueError, match="unknown keys"):
        TravelTimes.from_json({"speed": 3})


@pytest.mark.parametrize("kwargs", [
    {"road_factor": 0.9}, {"speed_kmh": (20.0,) * 23}, {"speed_kmh": (0.0,) * 24},
    {"band_edges_m": (3000.0, 1000.0), "band_factors": (1.0, 1.0, 1.0)}, {"band_edges_m": (1000.0,)},
])
def test_invalid_travel_times_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="TravelTimes"):
        TravelTimes(**kwargs)


# --- plan_stops ----------------------------------------------------------------------------------

def test_one_stop() -> None:
    stop = Stop("KL0001", 39.92, 116.42, T0, T0 + 60 * MIN)
    plan = plan_stops(DEPOT, T0, [stop], TT)
    assert plan.order == ("KL0001",) and plan.status == "single"
    assert plan.arrivals == (T0 + round(TT.seconds(DEPOT, (39.92, 116.42), T0) * 1000),)
    assert plan.distance_m == pytest.approx(TT.road_m(DEPOT, (39.92, 116.42)))
    assert plan_stops(DEPOT, T0, [], TT).order == ()


def test_identical_positions() -> None:
    stops = [Stop(f"KL{i}", *DEPOT) for i in range(4)]
    plan = plan_stops(DEPOT, T0, stops, TT, service_ms=0)
    assert sorted(plan.order) == [s.order_id for s in stops]
    assert plan.distance_m == 0 and plan.travel_s == 0 and plan.arrivals == (T0,) * 4


def test_deterministic() -> None:
    stops = _random_stops(random.Random(5), 7, windows=True)
    plans = {plan_stops(DEPOT, T0 - 30 * MIN, stops, TT) for _ in range(5)}
    assert len(plans) == 1


def test_no_windows_never_worse_than_nearest_neighbour_and_mostly_optimal() -> None:
    rng = random.Random(11)
    optimal = 0
    for _ in range(30):
        stops = _random_stops(rng, 6, windows=False)
        plan = plan_stops(DEPOT, T0, stops, TT)
        assert plan.status == "solver" and plan.late_s == 0
        nearest = walk(DEPOT, T0, visit_order(*DEPOT, stops), TT)
        assert plan.travel_s <= nearest.travel_s + 1e-6
        best = min(walk(DEPOT, T0, list(p), TT).travel_s for p in itertools.permutations(stops))
        optimal += plan.travel_s <= best + 1.0  # the solver's matrix rounds legs to whole seconds
    assert optimal >= 27


def test_windows_are_respected_when_feasible() -> None:
    # Nearest neighbour serves the close stop first and reaches the far one after its window closed.
    close = Stop("KL-CLOSE", DEPOT[0] + 0.005, DEPOT[1], T0, T0 + 240 * MIN)
    far = Stop("KL-FAR", DEPOT[0] + 0.08, DEPOT[1] + 0.05, T0, T0 + 22 * MIN)  # ~20 min away
    nearest = walk(DEPOT, T0, visit_order(*DEPOT, [close, far]), TT)
    assert nearest.order == ("KL-CLOSE", "KL-FAR") and nearest.late_s > 0
    plan = plan_stops(DEPOT, T0, [close, far], TT, margin_ms=0)
    assert plan.order == ("KL-FAR", "KL-CLOSE") and plan.late_s == 0
    assert all(a <= s.window_end for a, s in zip(plan.arrivals, [far, close], strict=True))


def test_waits_for_a_window_to_open_only_when_asked() -> None:
    stop = Stop("KL0001", 39.91, 116.40, T0 + 120 * MIN, T0 + 180 * MIN)
    other = Stop("KL0002", 39.91, 116.41, None, None)
    waiting = plan_stops(DEPOT, T0, [stop, other], TT)
    eager = plan_stops(DEPOT, T0, [stop, other], TT, wait_for_window=False)
    assert waiting.arrivals[waiting.order.index("KL0001")] >= T0 + 120 * MIN
    assert eager.arrivals[eager.order.index("KL0001")] < T0 + 120 * MIN


def test_with_windows_beats_nearest_neighbour_on_its_objective() -> None:
    rng = random.Random(3)
    better = 0
    for _ in range(20):
        stops = _random_stops(rng, 6, windows=True)
        plan = plan_stops(DEPOT, T0 - 40 * MIN, stops, TT, margin_ms=0)
        nearest = walk(DEPOT, T0 - 40 * MIN, visit_order(*DEPOT, stops), TT)
        assert _cost(plan) <= _cost(nearest) + 5.0  # whole-second matrix vs the exact walk
        better += _cost(plan) < _cost(nearest) - 60
    assert better >= 5


def test_falls_back_to_nearest_neighbour_when_the_solver_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "_solve", lambda *args: None)
    stops = _random_stops(random.Random(2), 5, windows=True)
    plan = plan_stops(DEPOT, T0, stops, TT)
    assert plan.status == "nearest-fallback"
    assert plan.order == tuple(s.order_id for s in visit_order(*DEPOT, stops))


def test_rejects_duplicate_ids_and_negative_service() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan_stops(DEPOT, T0, [Stop("A", 39.9, 116.4), Stop("A", 39.91, 116.4)], TT)
    with pytest.raises(ValueError, match="service_ms"):
        plan_stops(DEPOT, T0, [Stop("A", 39.9, 116.4)], TT, service_ms=-1)
    with pytest.raises(ValueError, match=r"non-finite.*'B'"):
        plan_stops(DEPOT, T0, [Stop("A", 39.9, 116.4), Stop("B", float("nan"), 116.4)], TT)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), seed=st.integers(0, 10_000), windows=st.booleans())
def test_plan_is_a_permutation_with_consistent_arrivals(n: int, seed: int, windows: bool) -> None:
    stops = _random_stops(random.Random(seed), n, windows)
    plan = plan_stops(DEPOT, T0, stops, TT)
    assert sorted(plan.order) == sorted(s.order_id for s in stops)
    by_id = {s.order_id: s for s in stops}
    assert walk(DEPOT, T0, [by_id[i] for i in plan.order], TT).arrivals == plan.arrivals
    assert all(b - a >= 5 * MIN for a, b in itertools.pairwise(plan.arrivals))
