"""SimulationConfig.stop_order: "nearest" keeps the simulator's order, "planned" reorders each van load."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from projections.eta import Stop, visit_order
from simulator.traffic import SimulationConfig, event_log

SMALL = {"seed": 9, "orders": 90, "sensor_interval_s": 3600.0, "gps_interval_s": 30.0}


def _loads(log: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str, dict[str, Any], list[str]]]:
    """Van loads in dispatch order: (time, driver, origin, order ids in the order they were dispatched)."""
    loads: dict[tuple[int, str], tuple[dict[str, Any], list[str]]] = defaultdict(lambda: ({}, []))
    for record_type, r in log:
        if record_type == "OrderDispatched":
            origin, ids = loads[(r["event_time"], r["driver_id"])]
            origin.update(r["origin"])
            ids.append(r["order_id"])
    return [(at, driver, origin, ids) for (at, driver), (origin, ids) in sorted(loads.items())]


@pytest.fixture(scope="module")
def logs() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return {order: event_log(SimulationConfig(**SMALL, stop_order=order)) for order in ("nearest", "planned")}


def test_planned_runs_are_deterministic(logs: dict[str, list]) -> None:
    assert event_log(SimulationConfig(**SMALL, stop_order="planned")) == logs["planned"]


def test_default_is_nearest_and_unknown_orders_are_rejected(logs: dict[str, list]) -> None:
    assert SimulationConfig().stop_order == "nearest"
    assert event_log(SimulationConfig(**SMALL)) == logs["nearest"]
    with pytest.raises(ValueError, match="stop_order"):
        SimulationConfig(stop_order="random")


def test_same_first_loads_other_order(logs: dict[str, list]) -> None:
    where = {r["order_id"]: r["delivery_address"]["location"] for t, r in logs["nearest"] if t == "OrderCreated"}
    nearest, planned = _loads(logs["nearest"]), _loads(logs["planned"])
    # Before the runs drift apart (vans come home at other times) the loads are the very same orders.
    assert [(at, d, sorted(ids)) for at, d, _, ids in nearest[:3]] == [(at, d, sorted(ids))
                                                                        for at, d, _, ids in planned[:3]]
    relieved = {r["order_id"] for t, r in logs["nearest"]
                if t == "ExceptionReported" and r["reason_code"] == "TRAFFIC_ACCIDENT"}
    reordered = 0
    for _, _, origin, ids in nearest:  # the default keeps the nearest-neighbour order from the depot
        if relieved & set(ids):
            continue  # a relief van carries on in the crashed van's order
        stops = [Stop(i, where[i]["lat"], where[i]["lng"]) for i in ids]
        assert [s.order_id for s in visit_order(origin["lat"], origin["lng"], stops)] == ids
    for _, _, origin, ids in planned:
        stops = [Stop(i, where[i]["lat"], where[i]["lng"]) for i in ids]
        reordered += [s.order_id for s in visit_order(origin["lat"], origin["lng"], stops)] != ids
    assert reordered > 0
