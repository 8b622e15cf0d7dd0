"""TimedBatches: fold + event-time timers, the same whatever the batching.

A seeded simulated log (orders, GPS, sensors) is turned into the records of the geofence and
alert inputs (van orders from the order fold, as the order agent publishes them), merged per
partition by time as ``kuailv replay`` does, and run through ``TimedBatches`` with very
different batch sizes: an engine (worker, Flink, replay) cuts batches wherever its source
hands them over, so the transitions, ETAs and alerts must not depend on it.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from config.alert_rules import load_rules_file
from config.geofences import load_fence_file
from projections.alert_step import AlertProjection
from projections.eta import DistanceSpeedEta
from projections.fence_index import FenceIndex
from projections.fleet import STATUS_INTERVAL_MS
from projections.geofence import GeoContext
from projections.geofence_step import GeofenceProjection
from projections.order_state import fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.timed_batch import TimedBatches, alert_timing, geofence_timing
from projections.van_eta import EtaSettings
from projections.van_orders import van_order_records
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import GPS, ORDER_EVENTS, ROAD_CONDITIONS, SENSORS, VAN_ORDERS
from simulator.config import SimulationConfig
from simulator.traffic import event_log
from streams.replay_streams import merged_by_time

CODEC = AvroCodec(epoch_ms=True)
RULES = load_rules_file()
TOPIC_OF = {"GpsPing": (GPS, "driver_id"), "SensorReading": (SENSORS, "device_id"),
            "VanOrder": (VAN_ORDERS, "driver_id"), "RoadConditions": (ROAD_CONDITIONS, "driver_id")}


def topic_records(log: list[tuple[str, dict[str, Any]]]) -> dict[str, list[SourceRecord]]:
    """Per topic, the records a producer keyed as the contracts say would have written (crc32 partitions)."""
    out: dict[str, list[SourceRecord]] = {}
    offsets: dict[tuple[str, int], int] = {}

    def put(spec: Any, key: str, record_type: str, value: dict[str, Any], at: int) -> None:
        partition = zlib.crc32(key.encode()) % spec.partitions
        offset = offsets.get((spec.name, partition), 0)
        offsets[(spec.name, partition)] = offset + 1
        out.setdefault(spec.name, []).append(
            SourceRecord(spec.name, partition, offset, key.encode(), CODEC.encode(record_type, value), at))

    states: dict[str, Any] = {}
    for t, v in log:
        if t in TOPIC_OF:
            spec, key = TOPIC_OF[t]
            put(spec, v[key], t, v, v["event_time"])
            continue
        if t not in ORDER_EVENT_TYPES:  # records no projection here reads (stock movements)
            continue
        put(ORDER_EVENTS, v["order_id"], t, v, v["event_time"])
        before = states.get(v["order_id"])
        result = fold(before, t, v, trace=True)
        previous = before["view"] if before else None
        for view in result.views:
            for vo in van_order_records(previous, view):
                put(VAN_ORDERS, vo["driver_id"], "VanOrder", vo, vo["event_time"])
            previous = view
        states[v["order_id"]] = result.state
    return out


def simulated_topics() -> dict[str, list[SourceRecord]]:
    """A seeded day: 40 orders, 6 vans, sensor excursions, accidents, short picks."""
    log = event_log(SimulationConfig(seed=3, orders=40, orders_per_hour=40.0, n_drivers=6,
                                     sensor_excursion_per_hour=0.5, p_accident=0.05, p_scale_under=0.1,
                                     start=1_780_300_800_000))
    return topic_records(log)


@pytest.fixture(scope="module")
def topics() -> dict[str, list[SourceRecord]]:
    return simulated_topics()


def _run(steps: TimedBatches, partitions: list[list[SourceRecord]], size: int) -> list[tuple[str, dict[str, Any]]]:
    states: dict[str, Any] = {}
    indexes: dict[str, dict[str, int]] = {}
    marks: dict[str, int] = {}
    outputs: list[tuple[str, dict[str, Any]]] = []
    for records in partitions:
        for i in range(0, len(records), size):
            stepped = steps.step(records[i:i + size], lambda keys: {k: states[k] for k in keys if k in states},
                                 lambda where: indexes.setdefault(where, {}), marks)
            states.update(stepped.states)
            outputs += stepped.outputs
    return outputs


def geofence_steps() -> TimedBatches:
    fences = load_fence_file(None)
    soon, silent = RULES.by_kind("arriving-soon"), RULES.by_kind("gps-silent")
    assert soon is not None and silent is not None
    ctx = GeoContext(fences, 30_000, EtaSettings(DistanceSpeedEta(), soon_ms=round(soon.params.threshold_min * 60_000)),
                     silence_ms=round(silent.params.silence_min * 60_000), status_ms=STATUS_INTERVAL_MS)
    projection = GeofenceProjection(CODEC, FenceIndex(fences), ctx, {GPS.name: "GpsPing", VAN_ORDERS.name: "VanOrder",
                                                                 ROAD_CONDITIONS.name: "RoadConditions"},
                                    RULES)
    return TimedBatches(projection, geofence_timing(projection))


def alert_steps() -> TimedBatches:
    projection = AlertProjection(CODEC, RULES, {ORDER_EVENTS.name: "OrderEvent", SENSORS.name: "SensorReading"})
    return TimedBatches(projection, alert_timing(projection, 60_000))


def _per(outputs: list[tuple[str, dict[str, Any]]], kind: str, key: str) -> dict[str, list[dict[str, Any]]]:
    """Per key, its records in order (keys interleave differently with other batch cuts; a key's own do not)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for k, v in outputs:
        if k == kind:
            out.setdefault(v[key], []).append(v)
    return out


def _latest(outputs: list[tuple[str, dict[str, Any]]], kind: str, key: str) -> dict[str, dict[str, Any]]:
    return {v[key]: v for k, v in outputs if k == kind}


@pytest.mark.parametrize("size", [1, 7, 300])
def test_geofence_outputs_do_not_depend_on_the_batching(topics: dict[str, list[SourceRecord]], size: int) -> None:
    partitions = merged_by_time([topics[GPS.name], topics[VAN_ORDERS.name], topics[ROAD_CONDITIONS.name]])
    big, small = _run(geofence_steps(), partitions, 5000), _run(geofence_steps(), partitions, size)
    transitions = _per(big, "transition", "driver_id")
    assert sum(map(len, transitions.values())) > 20
    assert transitions == _per(small, "transition", "driver_id")  # each driver's in the same order
    assert _per(big, "eta", "order_id") == _per(small, "eta", "order_id")
    assert _latest(big, "alert", "alert_id") == _latest(small, "alert", "alert_id")


@pytest.mark.parametrize("size", [1, 5, 120])
def test_alert_outputs_do_not_depend_on_the_batching(topics: dict[str, list[SourceRecord]], size: int) -> None:
    partitions = merged_by_time([topics[ORDER_EVENTS.name], topics[SENSORS.name]])
    big, small = _run(alert_steps(), partitions, 5000), _run(alert_steps(), partitions, size)
    alerts = _latest(big, "alert", "alert_id")
    assert {a["rule_id"] for a in alerts.values()} >= {"stock-shortage", "cold-chain-breach"}
    assert alerts == _latest(small, "alert", "alert_id")


def test_timers_fire_from_the_index_and_leave_it_consistent(topics: dict[str, list[SourceRecord]]) -> None:
    """After the run, every key in a timer index has exactly its state's next due time."""
    steps = alert_steps()
    states: dict[str, Any] = {}
    indexes: dict[str, dict[str, int]] = {}
    marks: dict[str, int] = {}
    for records in merged_by_time([topics[ORDER_EVENTS.name], topics[SENSORS.name]]):
        for i in range(0, len(records), 50):
            stepped = steps.step(records[i:i + 50], lambda keys: {k: states[k] for k in keys if k in states},
                                 lambda where: indexes.setdefault(where, {}), marks)
            states.update(stepped.states)
    for where, index in indexes.items():
        for key, due in index.items():
            assert steps.timing is not None and steps.timing.due(states[key]) == due, (where, key)
    assert all(mark > 0 for mark in marks.values()) and marks
