"""Re-dispatch after a reported accident: nearest eligible driver, every exclusion explained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from projections.eta import DistanceSpeedEta, Eta, Stop, VanSnapshot
from projections.geo import haversine_m
from projections.redispatch import Candidate, suggest

T0 = 1_780_000_000_000
MIN = 60_000
INCIDENT = (39.90, 116.40)
DEST = (39.95, 116.45)
ORDER = "KL20260601007"


def cand(driver_id: str, north_deg: float = 0.01, *, at: int = T0 - MIN, load: float = 100.0,
         capacity: float = 500.0, available: bool = True) -> Candidate:
    return Candidate(driver_id, f"v-{driver_id}", INCIDENT[0] + north_deg, INCIDENT[1], at, capacity, load, available)


def decide(candidates, estimator=None, weight_kg: float = 30.0, **kwargs):
    return suggest(ORDER, "d00", *INCIDENT, *DEST, weight_kg, T0, candidates, estimator or DistanceSpeedEta(),
                   **kwargs)


def test_nearest_eligible_driver_and_every_exclusion_explained():
    candidates = [
        cand("d00", 0.0),                                # the driver who reported the accident
        cand("d01", 0.001, available=False),
        cand("d02", 0.002, at=T0 - 12 * MIN),
        cand("d03", 0.003, load=480.0),
        cand("d04", 0.004, at=T0 + 2 * MIN),
        cand("d05", 0.02),
        cand("d06", 0.01),
    ]

    d = decide(candidates)

    s = d.suggestion
    assert s is not None
    assert (s.order_id, s.from_driver_id, s.to_driver_id, s.to_vehicle_id, s.at) == (ORDER, "d00", "d06", "v-d06", T0)
    assert s.distance_m == pytest.approx(1501.13, abs=0.01)  # 1111.95 m great-circle × 1.35
    # Pickup: 1501.13 m; then 9458.67 m to the customer; 10959.80 m at 22 km/h = 1793.422 s, + 5 min loading.
    assert s.eta == T0 + 2_093_422
    assert s.considered == d.considered == 7
    assert s.excluded == d.excluded == {
        "d00": "reporting driver",
        "d01": "unavailable",
        "d02": "position 12 min old",
        "d03": "full: 480/500 kg, order needs 30 kg",
        "d04": "position 2 min in the future",
    }
    assert d.reason == s.reason == ("nearest eligible driver: 1.5 km by road to the incident, 400 kg free; "
                                    "5 of 7 excluded")


def test_capacity_boundary():
    exact = decide([cand("d01", load=470.0)])
    short = decide([cand("d01", load=470.5)])

    assert exact.suggestion is not None and exact.suggestion.to_driver_id == "d01"
    assert short.suggestion is None
    assert short.excluded == {"d01": "full: 470.5/500 kg, order needs 30 kg"}


def test_stale_fix_boundary_and_future_tolerance():
    ok = [cand("d01", at=T0 - 5 * MIN), cand("d02", 0.005, at=T0 + MIN)]
    assert decide(ok).excluded == {}
    assert decide(ok).suggestion.to_driver_id == "d02"

    stale = decide([cand("d01", at=T0 - 5 * MIN - 1), cand("d02", at=T0 - 45_000)], max_fix_age_ms=30_000)
    assert stale.excluded == {"d01": "position 5 min old", "d02": "position 45 s old"}
    assert stale.suggestion is None
    assert decide([cand("d01", at=T0 + MIN + 1)]).excluded == {"d01": "position 1 min in the future"}


def test_ties_go_to_the_smallest_driver_id_whatever_the_input_order():
    tied = [cand("d09"), cand("d08"), cand("d10")]

    assert decide(tied).suggestion.to_driver_id == "d08"
    assert decide(list(reversed(tied))).suggestion.to_driver_id == "d08"


def test_nobody_eligible_or_nobody_to_ask():
    nobody = decide([cand("d00"), cand("d01", available=False)])
    assert nobody.suggestion is None
    assert nobody.considered == 2
    assert nobody.reason == "no eligible driver: all 2 candidates excluded"
    assert nobody.excluded == {"d00": "reporting driver", "d01": "unavailable"}

    empty = decide([])
    assert (empty.suggestion, empty.considered, empty.excluded, empty.reason) == (None, 0, {}, "no candidates")


class RecordingEstimator:
    """An estimator without ``road_factor``: a fixed 20 min per stop, recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[VanSnapshot, list[Stop]]] = []

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        self.calls.append((van, list(stops)))
        return [Eta(s.order_id, van.at + (i + 1) * 20 * MIN, 0.0, i) for i, s in enumerate(stops)]


def test_estimator_sees_pickup_then_destination_and_default_road_factor():
    est = RecordingEstimator()

    s = decide([cand("d05", 0.02), cand("d06")], est).suggestion

    assert s.to_driver_id == "d06"
    assert s.eta == T0 + 40 * MIN
    assert s.distance_m == pytest.approx(haversine_m(39.91, 116.40, *INCIDENT) * 1.35)
    assert est.calls == [(VanSnapshot("d06", 39.91, 116.40, T0, None),
                          [Stop(ORDER, *INCIDENT), Stop(ORDER, *DEST)])]


def test_road_factor_of_the_estimator_is_used():
    s = decide([cand("d06")], DistanceSpeedEta(road_factor=1.0)).suggestion

    assert s.distance_m == pytest.approx(1111.95, abs=0.01)


def test_invalid_input_is_an_error_with_context():
    with pytest.raises(ValueError, match="d06 is a candidate twice"):
        decide([cand("d06"), replace(cand("d06"), lat=39.99)])
    with pytest.raises(ValueError, match=f"{ORDER}: weight_kg"):
        decide([cand("d06")], weight_kg=-1.0)
