"""Van speed from pings, ETAs along a route, visit order and arrival notices (projections.eta)."""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.eta import (
    SPEED_WINDOW_MS,
    DistanceSpeedEta,
    Eta,
    EtaEstimator,
    Stop,
    VanSnapshot,
    arriving_soon,
    speed_mps,
    track,
    visit_order,
    within,
)
from projections.geo import BEIJING

T0 = 1_780_000_000_000
MIN = 60_000
LAT, LNG = 39.90, 116.40
KX, KY = BEIJING.scales()  # metres per degree of longitude / latitude


def east(metres: float) -> float:
    return LNG + metres / KX


def track_all(pings: list[tuple[int, float, float]]) -> dict:
    state = None
    for at, lat, lng in pings:
        state = track(state, lat, lng, at)
    return state


def straight_line(n: int, every_ms: int, mps: float) -> list[tuple[int, float, float]]:
    """``n`` pings heading east along lat 39.9 at ``mps``."""
    return [(T0 + i * every_ms, LAT, east(mps * i * every_ms / 1000)) for i in range(n)]


# --- track / speed_mps -------------------------------------------------------------------

def test_speed_of_a_straight_line_at_10_mps():
    state = track_all(straight_line(31, 10_000, 10.0))  # 300 s, 3 km

    assert len(state["fixes"]) == 31
    assert speed_mps(state) == pytest.approx(10.0, rel=0.02)


def test_no_speed_from_one_fix_or_less_than_30_s():
    assert speed_mps(None) is None
    one = track(None, LAT, LNG, T0)
    assert speed_mps(one) is None
    assert speed_mps(track(one, LAT, east(200), T0 + 29_999)) is None
    assert speed_mps(track(one, LAT, east(300), T0 + 30_000)) == pytest.approx(10.0, rel=0.01)


def test_out_of_order_and_duplicate_pings_give_the_in_order_state():
    pings = straight_line(12, 15_000, 8.0)
    shuffled = pings[:]
    random.Random(7).shuffle(shuffled)
    redelivered = [*shuffled[:6], pings[3], pings[9], *shuffled[6:], pings[0]]  # at-least-once re-deliveries

    in_order = track_all(pings)
    assert [f[0] for f in in_order["fixes"]] == [T0 + i * 15_000 for i in range(12)]
    assert track_all(shuffled) == in_order
    assert track_all(redelivered) == in_order
    # A second ping with a time already held is a duplicate even if its position differs: the first held wins.
    assert track(in_order, 39.95, 116.45, pings[3][0]) == in_order


def test_window_keeps_only_the_last_five_minutes_of_event_time():
    state = track_all(straight_line(11, MIN, 5.0))  # T0 .. T0+10 min

    assert [f[0] for f in state["fixes"]] == [T0 + m * MIN for m in range(5, 11)]
    # A late ping from before the window does not come back.
    assert track(state, LAT, LNG, T0 + 4 * MIN) == state
    # One inside the window is inserted in place.
    late = track(state, LAT, east(1), T0 + 5 * MIN + 30_000)
    assert [f[0] for f in late["fixes"]][:3] == [T0 + 5 * MIN, T0 + 5 * MIN + 30_000, T0 + 6 * MIN]


def test_number_of_fixes_is_capped_keeping_the_newest():
    state = track_all(straight_line(100, 1_000, 10.0))

    assert [f[0] for f in state["fixes"]] == [T0 + s * 1_000 for s in range(36, 100)]


def test_track_returns_a_new_json_state_and_leaves_its_input_alone():
    state = track_all(straight_line(5, 10_000, 10.0))
    before = copy.deepcopy(state)

    after = track(state, LAT, east(500), T0 + 50_000)

    assert state == before
    assert len(after["fixes"]) == 6
    reloaded = json.loads(json.dumps(after))
    assert reloaded == after
    assert track(reloaded, LAT, east(600), T0 + 60_000) == track(after, LAT, east(600), T0 + 60_000)


def test_track_rejects_a_non_finite_position():
    with pytest.raises(ValueError, match="non-finite"):
        track(None, float("nan"), LNG, T0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, SPEED_WINDOW_MS), min_size=1, max_size=80, unique=True).flatmap(
    lambda times: st.tuples(st.just(sorted(times)), st.permutations(times))))
def test_track_is_independent_of_arrival_order(times_and_order):
    in_order, arrival = times_and_order
    position = {t: (LAT + (t % 997) * 1e-5, LNG + (t % 991) * 1e-5) for t in in_order}

    def fold(times):
        return track_all([(T0 + t, *position[t]) for t in times])

    assert fold(arrival) == fold(in_order)


# --- DistanceSpeedEta --------------------------------------------------------------------

# Along the meridian 116.40: 0.01° of latitude is 1111.95 m great-circle, 1501.13 m by road (× 1.35).
VAN = VanSnapshot("d1", 39.90, 116.40, T0, 10.0)
ROUTE = [Stop("A", 39.91, 116.40), Stop("B", 39.93, 116.40)]


def test_eta_along_a_route_by_hand():
    estimator: EtaEstimator = DistanceSpeedEta()

    a, b = estimator.estimate(VAN, ROUTE)

    # A: 1501.13 m at 10 m/s = 150.113 s. B: 3 × 1501.13 = 4503.40 m = 450.340 s, + 5 min serving A.
    assert (a.order_id, a.eta, a.stops_before) == ("A", T0 + 150_113, 0)
    assert a.distance_m == pytest.approx(1501.13, abs=0.01)
    assert (b.order_id, b.eta, b.stops_before) == ("B", T0 + 150_340 + 600_000, 1)
    assert b.distance_m == pytest.approx(4503.40, abs=0.01)
    assert estimator.estimate(VAN, []) == []


@pytest.mark.parametrize(("speed", "expected"), [
    (1.0, T0 + 675_510),    # clamped up to 8 km/h: 1501.13 m / 2.222 m/s
    (100.0, T0 + 90_068),   # clamped down to 60 km/h: / 16.667 m/s
    (None, T0 + 245_640),   # unknown: 22 km/h = 6.111 m/s
])
def test_speed_is_clamped_or_defaulted(speed, expected):
    van = VanSnapshot("d1", 39.90, 116.40, T0, speed)

    assert DistanceSpeedEta().estimate(van, ROUTE[:1]) == [Eta("A", expected, pytest.approx(1501.1336), 0)]


def test_custom_parameters():
    est = DistanceSpeedEta(road_factor=1.0, service_ms=0)
    _, b = est.estimate(VAN, ROUTE)
    assert b.eta == T0 + 333_585  # 3335.85 m at 10 m/s, no service time


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"road_factor": 0}, "road_factor"),
    ({"min_speed_kmh": -1}, "min_speed_kmh"),
    ({"max_speed_kmh": float("nan")}, "max_speed_kmh"),
    ({"min_speed_kmh": 30, "max_speed_kmh": 20}, "min_speed_kmh"),
    ({"default_speed_kmh": 70}, "default_speed_kmh"),
    ({"service_ms": -1}, "service_ms"),
])
def test_invalid_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DistanceSpeedEta(**kwargs)


# --- visit_order -------------------------------------------------------------------------

def test_nearest_neighbour_order_from_the_van():
    o1 = Stop("o1", 39.905, 116.40)  # 556 m north of the van
    o2 = Stop("o2", 39.90, 116.42)   # 1706 m east of the van
    o3 = Stop("o3", 39.92, 116.40)   # 2224 m north; from o1 1668 m, nearer than o2 (1794 m)
    stops = [o3, o2, o1]

    assert visit_order(39.90, 116.40, stops) == [o1, o3, o2]
    assert visit_order(39.90, 116.40, list(reversed(stops))) == [o1, o3, o2]
    assert stops == [o3, o2, o1]
    assert visit_order(39.90, 116.40, []) == []


def test_visit_order_ties_by_order_id():
    b, a = Stop("b", 39.91, 116.40), Stop("a", 39.91, 116.40)

    assert [s.order_id for s in visit_order(39.90, 116.40, [b, a])] == ["a", "b"]


# --- notices -----------------------------------------------------------------------------

def test_arriving_soon_fires_once_per_crossing():
    # (at, eta): on time, reaching 10 min left, still below; then a jam pushes it out and it comes back.
    timeline = [(T0, T0 + 20 * MIN), (T0 + 5 * MIN, T0 + 20 * MIN), (T0 + 10 * MIN, T0 + 20 * MIN),
                (T0 + 12 * MIN, T0 + 20 * MIN), (T0 + 13 * MIN, T0 + 30 * MIN), (T0 + 21 * MIN, T0 + 30 * MIN),
                (T0 + 22 * MIN, T0 + 30 * MIN)]
    fired, previous = [], None
    for at, eta in timeline:
        prev_eta, prev_at = previous or (None, None)
        fired.append(arriving_soon(prev_eta, eta, at, previous_at=prev_at))
        previous = (eta, at)

    assert fired == [False, False, True, False, False, True, False]


def test_arriving_soon_from_unknown_and_custom_threshold():
    assert arriving_soon(None, T0 + 5 * MIN, T0) is True
    assert arriving_soon(None, T0 + 11 * MIN, T0) is False
    assert arriving_soon(T0 + 30 * MIN, T0 + 4 * MIN, T0, 5 * MIN, previous_at=T0 - MIN) is True
    with pytest.raises(ValueError, match="previous_at"):
        arriving_soon(T0 + 20 * MIN, T0 + 5 * MIN, T0 + 12 * MIN)


def test_within_radius():
    assert within(39.90, 116.40, 39.90 + 100 / KY, 116.40) is True
    assert within(39.90, 116.40, 39.90 + 200 / KY, 116.40) is False
    assert within(39.90, 116.40, 39.90 + 200 / KY, 116.40, radius_m=250.0) is True
    with pytest.raises(ValueError, match="radius_m"):
        within(39.90, 116.40, 39.90, 116.40, radius_m=-1.0)
