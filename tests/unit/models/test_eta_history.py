"""models.history: the training rows are what the fold knew at each prediction point, labelled from the log."""

from __future__ import annotations

import numpy as np
import pytest

from models import history
from models.features import FEATURES, feature_rows
from projections.geofence import DEFAULT_LATENESS_MS
from tests.unit.models.eta_history import CONFIG, HOUR, small_dataset, small_log


def test_no_leakage_rows_before_a_cut_do_not_depend_on_later_events() -> None:
    """Rows from the log cut at T equal the full log's: no event after T touched them. A driver's fold releases
    a ping once the driver's own clock (newest ping) is ``allowed lateness`` past it, so the rows the cut log
    can hold are those at or before (the driver's newest ping before T) - lateness: all of them must be there."""
    log = small_log()
    cut = CONFIG.start + 5 * HOUR + 17 * 60_000  # mid-morning, vans on the road
    head = [r for r in log if r[1]["event_time"] <= cut]
    clock: dict[str, int] = {}
    for record_type, r in head:
        if record_type == "GpsPing":
            clock[r["driver_id"]] = max(clock.get(r["driver_id"], 0), r["event_time"])
    points_cut = history.prediction_points(head, sample_ms=0)
    points_full = history.prediction_points(log, sample_ms=0)
    known = [p for p in points_full if p[0].at <= clock.get(p[0].driver_id, 0) - DEFAULT_LATENESS_MS]
    assert len(points_cut) > 1000 and len(points_full) > 2 * len(known)
    assert points_cut == known  # the same snapshots and stops, field by field
    assert all(np.array_equal(feature_rows(*a), feature_rows(*b), equal_nan=True)
               for a, b in zip(points_cut, known, strict=True))


def test_the_fold_fills_the_model_inputs() -> None:
    points = history.prediction_points(small_log())
    vans = [v for v, _ in points]
    assert sum(v.traffic_index is not None for v in vans) / len(vans) > 0.95
    assert any(v.rain_mm_h for v in vans)  # the shower of this seed
    assert sum(v.driver_pace is not None for v in vans) / len(vans) > 0.5
    assert all(s.window_end is not None and s.dispatched_at is not None and s.dispatched_at <= v.at
               for v, stops in points for s in stops)


def test_labels_come_from_the_door_event_of_the_dispatch_in_force() -> None:
    log = small_log()
    data = small_dataset()
    door_at: dict[str, int] = {}
    window_end: dict[str, int] = {}
    for record_type, r in log:
        if record_type == "OrderCreated":
            window_end[r["order_id"]] = r["delivery_window_end"]
        elif record_type in ("OrderDelivered", "DeliveryRefused") or (
                record_type == "ExceptionReported" and r["reason_code"] == "GOODS_DAMAGED"):
            door_at.setdefault(r["order_id"], r["event_time"])
    assert len(data) > 1000 and 0.05 < data.late.mean() < 0.5
    for i in range(0, len(data), 7):
        oid = data.order_id[i]
        assert data.remaining_s[i] == pytest.approx((door_at[oid] - data.at[i]) / 1000)
        assert data.late[i] == (door_at[oid] > window_end[oid])
    assert data.X.shape == (len(data), len(FEATURES))


def test_a_dispatch_ended_by_an_accident_has_no_door_of_its_own() -> None:
    log = [("OrderDispatched", {"order_id": "O1", "driver_id": "D1", "event_time": 100}),
           ("ExceptionReported", {"order_id": "O1", "reason_code": "TRAFFIC_ACCIDENT", "event_time": 200}),
           ("OrderDispatched", {"order_id": "O1", "driver_id": "D2", "event_time": 300}),
           ("OrderDelivered", {"order_id": "O1", "event_time": 400}),
           ("OrderDispatched", {"order_id": "O2", "driver_id": "D1", "event_time": 100}),
           ("ExceptionReported", {"order_id": "O2", "reason_code": "GOODS_DAMAGED", "event_time": 150})]
    doors = history.doors(log)
    assert doors["O1"] == [history.Door("D1", 100, None), history.Door("D2", 300, 400)]
    assert doors["O2"] == [history.Door("D1", 100, 150)]
    assert history._door_of(doors["O1"], "D1", 150) is None  # the crashed van's rows are dropped
    assert history._door_of(doors["O1"], "D2", 350) == 400


def test_recording_estimator_samples_once_per_driver_and_period() -> None:
    from projections.eta import Stop, VanSnapshot

    rec = history.RecordingEstimator(sample_ms=300_000)
    stops = [Stop("O1", 39.9, 116.4)]
    for at in (0, 30_000, 299_999, 300_000, 330_000):
        assert rec.estimate(VanSnapshot("D1", 39.8, 116.3, at, None), stops) == rec.inner.estimate(
            VanSnapshot("D1", 39.8, 116.3, at, None), stops)
    rec.estimate(VanSnapshot("D2", 39.8, 116.3, 30_000, None), stops)
    assert [(v.driver_id, v.at) for v, _ in rec.points] == [("D1", 0), ("D1", 300_000), ("D2", 30_000)]


def test_split_at_holds_out_everything_from_the_cut() -> None:
    data = small_dataset()
    cut = CONFIG.start + 8 * HOUR
    train, test = history.split_at(data, cut)
    assert len(train) + len(test) == len(data)
    assert train.at.max() < cut <= test.at.min()
