"""The fence file is validated with errors naming the fence and field; the index classifies exactly."""

from __future__ import annotations

import copy
import json
import random

import pytest

from config.geofences import load_fence_file
from projections.fence_index import FenceIndex
from projections.fences import FenceError, load_fences
from projections.geo import haversine_m
from tests.unit.projections.geofence_builders import FENCE_FILE, INDEX, WH, east_of


def _with(change: dict) -> dict:
    raw = copy.deepcopy(FENCE_FILE)
    raw["fences"][0].update(change)
    return raw


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "SHOP"}, "fence 'WH-1': kind must be one of"),
    ({"circle": {"lat": 39.9, "lng": 116.4, "radius_m": -5}}, "fence 'WH-1': circle.radius_m must be > 0"),
    ({"circle": {"lat": 99.0, "lng": 116.4, "radius_m": 5}}, "fence 'WH-1': circle (99.0, 116.4) is not a coord"),
    ({"polygon": [[39.9, 116.4], [39.91, 116.4], [39.9, 116.41]]}, "fence 'WH-1': give exactly one of circle or"),
    ({"min_points": 0}, "fence 'WH-1': min_points must be an integer >= 1"),
    ({"dwell_min": "five"}, "fence 'WH-1': dwell_min must be a number"),
    ({"colour": "red"}, "fence 'WH-1': unknown field(s) ['colour']"),
    ({"id": "a/b"}, "without '/'"),
    ({"warehouse_id": None}, "fence 'WH-1': a WAREHOUSE fence needs warehouse_id"),
])
def test_invalid_fence_names_fence_and_field(change: dict, message: str) -> None:
    with pytest.raises(FenceError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_fences(_with(change))


def test_duplicate_ids_and_bad_polygon_are_refused() -> None:
    raw = copy.deepcopy(FENCE_FILE)
    raw["fences"].append(copy.deepcopy(raw["fences"][0]))
    with pytest.raises(FenceError, match="fence 'WH-1': duplicate id"):
        load_fences(raw)
    raw = copy.deepcopy(FENCE_FILE)
    raw["fences"][1]["polygon"] = [[39.9, 116.4], [39.9, 116.4], [39.91, 116.41]]
    with pytest.raises(FenceError, match="fence 'NOGO-1': polygon needs at least 3 distinct points"):
        load_fences(raw)


def test_shipped_fence_file_loads_and_covers_every_simulated_warehouse() -> None:
    from simulator.city import WAREHOUSE_SITES

    fences = load_fence_file()
    assert fences.version
    warehouse_fences = {f.warehouse_id for f in fences.fences if f.kind == "WAREHOUSE"}
    assert warehouse_fences == {site[0] for site in WAREHOUSE_SITES}
    json.dumps(FENCE_FILE)  # the builders' file is plain JSON too


@pytest.mark.parametrize(("metres", "expected"), [
    (0, [("WH-1", True)]), (199, [("WH-1", True)]), (201, [("WH-1", False)]), (249, [("WH-1", False)]),
    (251, []), (5000, []),
])
def test_circle_in_band_out_by_distance(metres: float, expected: list) -> None:
    lat, lng = east_of(WH, metres)
    assert INDEX.classify([lat], [lng]) == [expected]


def test_polygon_inside_band_outside() -> None:
    # NOGO-1 spans lat 39.90..39.91; its east edge is lng 116.41; exit margin 20 m.
    inside, band, outside = east_of((39.905, 116.41), -30), east_of((39.905, 116.41), 10), east_of((39.905, 116.41), 40)
    got = INDEX.classify([inside[0], band[0], outside[0]], [inside[1], band[1], outside[1]])
    assert got == [[("NOGO-1", True)], [("NOGO-1", False)], []]


def test_index_agrees_with_a_loop_over_every_fence_on_random_points() -> None:
    """The STRtree path equals the naive per-fence loop (the Traccar way) for circles."""
    rnd = random.Random(7)
    raw = {"version": "r", "fences": [
        {"id": f"F{i}", "kind": "DEPOT", "exit_margin_m": rnd.choice([0, 25, 80]),
         "circle": {"lat": 39.9 + rnd.uniform(-0.05, 0.05), "lng": 116.4 + rnd.uniform(-0.05, 0.05),
                    "radius_m": rnd.uniform(30, 600)}} for i in range(300)]}
    fences = load_fences(raw)
    index = FenceIndex(fences)
    lats = [39.9 + rnd.uniform(-0.05, 0.05) for _ in range(400)]
    lngs = [116.4 + rnd.uniform(-0.05, 0.05) for _ in range(400)]
    got = index.classify(lats, lngs)
    disagreements = 0
    for lat, lng, hits in zip(lats, lngs, got, strict=True):
        naive = []
        for f in fences.fences:
            assert f.circle is not None
            d = haversine_m(lat, lng, f.circle[0], f.circle[1])
            if d <= f.circle[2] + f.hysteresis.exit_margin_m:
                naive.append((f.id, d <= f.circle[2]))
        if sorted(naive) != hits:
            # the planar frame is within 0.5 % of great-circle distance: only points within a
            # few metres of a border may differ
            disagreements += 1
    assert disagreements <= 2
    assert sum(len(h) for h in got) > 50  # the sample really hits fences
