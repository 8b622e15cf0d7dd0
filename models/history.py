"""The training set of the delay-risk and ETA models, replayed from an event log through the pure projections. Pure.

``Replay`` (and ``prediction_points(log)``) replays a log the way the stream does: order events are folded
per order (``projections.order_state``) and every view change becomes ``VanOrder`` records
(``projections.van_orders``); those, the GPS pings and the RoadConditions are folded per driver by
``projections.geofence.step`` with ETAs on. Its estimator is a ``RecordingEstimator``: the baseline, noting
every ``(van, stops)`` it is asked about, which is exactly what an online model sees at that moment.

``label(points, log)`` joins each noted stop with the door event of its dispatch (OrderDelivered,
DeliveryRefused or a door ExceptionReported after that dispatch to that driver): remaining seconds =
door time - ``van.at``; late = door time > window end. A dispatch that ended in a traffic accident or was
handed to another van has no door event of its own: its rows are dropped. ``build_dataset`` does both and
computes ``models.features.feature_rows``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.features import FEATURES, feature_rows
from projections import order_state
from projections.eta import DistanceSpeedEta, Eta, Stop, VanSnapshot
from projections.fences import FenceSet, load_fences
from projections.geofence import DEFAULT_LATENESS_MS, GeoContext, step
from projections.order_status import TRANSITIONS
from projections.van_eta import EtaSettings
from projections.van_orders import van_order_records

Record = tuple[str, dict[str, Any]]
DRIVER_INPUTS = ("GpsPing", "RoadConditions")
DOOR_EVENTS = ("OrderDelivered", "DeliveryRefused", "ExceptionReported")
CHUNK = 512  # driver inputs per geofence step (any batching gives the same result)
DEFAULT_SAMPLE_MS = 5 * 60_000


class RecordingEstimator:
    """The baseline estimator, noting at most one ``(van, stops)`` per driver and ``sample_ms`` of event time
    (every call when ``sample_ms`` is 0). Deterministic: the same calls note the same points."""

    def __init__(self, sample_ms: int = DEFAULT_SAMPLE_MS, inner: DistanceSpeedEta | None = None) -> None:
        self.inner = inner or DistanceSpeedEta()
        self.road_factor = self.inner.road_factor
        self.sample_ms = sample_ms
        self.points: list[tuple[VanSnapshot, tuple[Stop, ...]]] = []
        self._bucket: dict[str, int] = {}

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        bucket = van.at // self.sample_ms if self.sample_ms > 0 else len(self.points)
        if self._bucket.get(van.driver_id) != bucket:
            self._bucket[van.driver_id] = bucket
            self.points.append((van, tuple(stops)))
        return self.inner.estimate(van, stops)


def default_fences() -> FenceSet:
    """Customer sites only (warehouse fences do not change ETAs): the default radii of a fence file."""
    return load_fences({"version": "training"})


@dataclass(frozen=True, slots=True)
class Door:
    driver_id: str
    dispatched_at: int
    door_at: int | None  # None: the dispatch ended in an accident or a hand-over


class _Doors:
    """How each dispatch of each order ended, from the order events in log order."""

    def __init__(self) -> None:
        self.trips: dict[str, list[list[Any]]] = defaultdict(list)  # [driver, dispatched at, door at, ended]

    def add(self, record_type: str, r: Mapping[str, Any]) -> None:
        if record_type == "OrderDispatched":
            self.trips[r["order_id"]].append([r["driver_id"], r["event_time"], None, False])
        elif record_type in DOOR_EVENTS and self.trips.get(r["order_id"]):
            last = self.trips[r["order_id"]][-1]
            if last[3]:
                return  # the first event after a dispatch decides how it ended
            last[3] = True
            if not (record_type == "ExceptionReported" and r.get("reason_code") == "TRAFFIC_ACCIDENT"):
                last[2] = r["event_time"]

    def result(self) -> dict[str, list[Door]]:
        return {oid: [Door(d, at, door) for d, at, door, _ in ts] for oid, ts in self.trips.items()}


def doors(log: Iterable[Record]) -> dict[str, list[Door]]:
    """Per order, its dispatches in time order with the door event each ended in (None: none of its own)."""
    book = _Doors()
    for record_type, r in log:
        book.add(record_type, r)
    return book.result()


Point = tuple[VanSnapshot, tuple[Stop, ...]]


class Replay:
    """A log fed record by record (no need to hold it): order events are folded per order into views and
    ``VanOrder`` records; those, pings and RoadConditions wait in a per-driver buffer that is folded by
    ``projections.geofence.step`` every ``CHUNK`` inputs (the fold gives the same result for any batching).
    ``finish()`` folds what is left and returns the noted prediction points (by driver, then time) and the
    door of every dispatch."""

    def __init__(self, fences: FenceSet | None = None, sample_ms: int = DEFAULT_SAMPLE_MS,
                 lateness_ms: int = DEFAULT_LATENESS_MS, progress: Callable[[int], None] | None = None) -> None:
        self.recorder = RecordingEstimator(sample_ms)
        self.ctx = GeoContext(fences or default_fences(), lateness_ms, EtaSettings(self.recorder, soon_ms=None))
        self.progress = progress
        self.orders: dict[str, dict[str, Any]] = {}
        self.buffers: dict[str, list[tuple[str, dict[str, Any], Any]]] = defaultdict(list)
        self.drivers: dict[str, dict[str, Any] | None] = {}
        self.doors = _Doors()

    def add(self, record_type: str, r: dict[str, Any]) -> None:
        if record_type in DRIVER_INPUTS:
            self._push(r["driver_id"], (record_type, r, None))
        elif record_type in TRANSITIONS:
            self.doors.add(record_type, r)
            oid = r["order_id"]
            before = self.orders.get(oid)
            res = order_state.fold(before, record_type, r, trace=True)
            self.orders[oid] = res.state
            prev = before["view"] if before else None
            for view in res.views:
                for v in van_order_records(prev, view):
                    self._push(v["driver_id"], ("VanOrder", v, None))
                prev = view

    def _push(self, driver: str, item: tuple[str, dict[str, Any], Any]) -> None:
        buf = self.buffers[driver]
        buf.append(item)
        if len(buf) >= CHUNK:
            self._flush(driver)

    def _flush(self, driver: str) -> None:
        buf = self.buffers.pop(driver, [])
        if buf:
            self.drivers[driver] = step(self.drivers.get(driver), buf, self.ctx).state
            if self.progress is not None:
                self.progress(len(buf))

    def finish(self) -> tuple[list[Point], dict[str, list[Door]]]:
        for driver in sorted(self.buffers):
            self._flush(driver)
        points = sorted(self.recorder.points, key=lambda p: (p[0].driver_id, p[0].at))
        return points, self.doors.result()


def prediction_points(log: Iterable[Record], fences: FenceSet | None = None, sample_ms: int = DEFAULT_SAMPLE_MS,
                      lateness_ms: int = DEFAULT_LATENESS_MS,
                      progress: Callable[[int], None] | None = None) -> list[Point]:
    """Every (sampled) ``(van, stops)`` the per-driver fold asks its estimator about, by driver and time."""
    replay = Replay(fences, sample_ms, lateness_ms, progress)
    for record_type, r in log:
        replay.add(record_type, r)
    return replay.finish()[0]


@dataclass(frozen=True, slots=True)
class Dataset:
    """Rows of ``FEATURES`` with their labels and keys; all arrays have one entry per row."""

    X: np.ndarray  # (n, len(FEATURES)) float64
    remaining_s: np.ndarray  # door time - at, seconds
    late: np.ndarray  # bool: door time > window end
    baseline_s: np.ndarray  # the baseline's seconds to the stop
    at: np.ndarray  # int64 epoch ms of the prediction point
    order_id: np.ndarray  # str
    driver_id: np.ndarray  # str

    def __len__(self) -> int:
        return len(self.at)

    def take(self, mask: np.ndarray) -> Dataset:
        return Dataset(self.X[mask], self.remaining_s[mask], self.late[mask], self.baseline_s[mask], self.at[mask],
                       self.order_id[mask], self.driver_id[mask])

    def column(self, name: str) -> np.ndarray:
        return self.X[:, FEATURES.index(name)]


def label(points: Sequence[Point], door_map: Mapping[str, list[Door]],
          road_factor: float | None = None) -> Dataset:
    """Feature rows of the noted stops whose dispatch ended at the door, with their labels."""
    rows: list[list[float]] = []
    remaining: list[float] = []
    late: list[bool] = []
    ats: list[int] = []
    oids: list[str] = []
    drivers: list[str] = []
    for van, stops in points:
        feats = feature_rows(van, stops) if road_factor is None else feature_rows(van, stops, road_factor)
        for stop, row in zip(stops, feats, strict=True):
            door = _door_of(door_map.get(stop.order_id, ()), van.driver_id, van.at)
            if door is None or door < van.at or stop.window_end is None:
                continue
            rows.append(row)
            remaining.append((door - van.at) / 1000)
            late.append(door > stop.window_end)
            ats.append(van.at)
            oids.append(stop.order_id)
            drivers.append(van.driver_id)
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
    return Dataset(X, np.asarray(remaining), np.asarray(late, dtype=bool), X[:, FEATURES.index("baseline_s")].copy(),
                   np.asarray(ats, dtype=np.int64), np.asarray(oids, dtype=object), np.asarray(drivers, dtype=object))


def _door_of(trips: Sequence[Door], driver: str, at: int) -> int | None:
    """The door time of the order's dispatch in force at ``at`` (the latest before it), if it is ``driver``'s."""
    current = None
    for d in trips:
        if d.dispatched_at <= at:
            current = d
    if current is None or current.driver_id != driver:
        return None
    return current.door_at


def build_dataset(log: Sequence[Record], fences: FenceSet | None = None, sample_ms: int = DEFAULT_SAMPLE_MS,
                  progress: Callable[[int], None] | None = None) -> Dataset:
    """``prediction_points`` of ``log`` labelled from the same log."""
    replay = Replay(fences, sample_ms, progress=progress)
    for record_type, r in log:
        replay.add(record_type, r)
    return label(*replay.finish())


def split_at(data: Dataset, cut_ms: int) -> tuple[Dataset, Dataset]:
    """(train, test): rows predicted before ``cut_ms`` and the rest (whole held-out days when ``cut_ms`` is a
    midnight). Raises when either side would be empty."""
    before = data.at < cut_ms
    if before.all() or not before.any():
        raise ValueError(f"split_at: cut {cut_ms} leaves {int(before.sum())} training and {int((~before).sum())} "
                         "test rows; both must be > 0")
    return data.take(before), data.take(~before)
