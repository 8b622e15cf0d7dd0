"""The simulator's traffic jams and GPS dead zones: the cases the alert rules must catch."""

from __future__ import annotations

import itertools

from simulator.config import SimulationConfig
from simulator.traffic import event_log

MIN = 60_000


def _pings(config: SimulationConfig) -> dict[str, list[dict]]:
    by_driver: dict[str, list[dict]] = {}
    for record_type, record in event_log(config):
        if record_type == "GpsPing":
            by_driver.setdefault(record["driver_id"], []).append(record)
    return by_driver


def test_jams_stand_still_and_dead_zones_go_quiet() -> None:
    config = SimulationConfig(seed=3, orders=40, n_drivers=8, p_traffic_jam=0.5, p_gps_dropout=0.5, p_accident=0.0)
    gaps, stills = [], []
    for pings in _pings(config).values():
        pings.sort(key=lambda p: p["event_time"])
        run_start = None
        for a, b in itertools.pairwise(pings):
            gaps.append(b["event_time"] - a["event_time"])
            if b["speed_kmh"] == 0.0 and abs(b["lat"] - a["lat"]) < 0.001 and abs(b["lng"] - a["lng"]) < 0.001:
                run_start = run_start or a["event_time"]
                stills.append(b["event_time"] - run_start)
            else:
                run_start = None
    assert max(gaps) >= 12 * MIN, "a dead zone silences the driver app for 12-20 min"
    assert max(stills) >= 40 * MIN, "a jam keeps the van standing 40-80 min"


def test_without_incidents_no_long_gaps_while_driving() -> None:
    config = SimulationConfig(seed=3, orders=20, n_drivers=6, p_traffic_jam=0.0, p_gps_dropout=0.0, p_accident=0.0)
    for pings in _pings(config).values():
        pings.sort(key=lambda p: p["event_time"])
        moving = [(a, b) for a, b in itertools.pairwise(pings) if a["speed_kmh"] > 0]
        assert all(b["event_time"] - a["event_time"] < 2 * MIN for a, b in moving)
