"""Simulate -> fold -> fit -> evaluate -> save: the training run behind ``kuailv train`` and ``kuailv report``.

Deterministic for given ``TrainOptions`` (the simulation is seeded, the models too). The only I/O is
``trainer.artifacts.save`` under the given root; ``progress`` is told about each phase (the CLI draws bars).
The history starts at Beijing midnight, so the held-out test days (``test_days``, the last ones) are whole
calendar days; the last orders' deliveries running past the last midnight count with the last day.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from models import history, training, travel_times
from models.evaluation import Evaluation, evaluate
from projections.routing import TravelTimes
from simulator.events import T0
from simulator.traffic import SimulationConfig, iter_event_log
from trainer import artifacts
from trainer.artifacts import TRAVEL_TIMES_FILE

DAY_MS = 86_400_000
START = T0 - 14 * 3_600_000  # 2026-06-01 00:00 Beijing (T0 is 14:00 Beijing)


@dataclass(frozen=True, slots=True)
class TrainOptions:
    days: float = 7.0
    seed: int = 42
    orders_per_hour: float = 30.0
    test_days: int = 1
    gps_interval_s: float = 10.0  # coarser than the 5 s default: the fold estimates every 30 s anyway
    sample_ms: int = history.DEFAULT_SAMPLE_MS
    max_iter: int = 150  # boosting rounds per model (inference cost grows with them)

    def simulation(self) -> SimulationConfig:
        return SimulationConfig(seed=self.seed, orders=round(self.days * 24 * self.orders_per_hour), start=START,
                                orders_per_hour=self.orders_per_hour, gps_interval_s=self.gps_interval_s,
                                sensor_interval_s=3600.0)  # sensors play no part here


class Progress(Protocol):
    def phase(self, name: str, total: float | None) -> None: ...
    def advance(self, amount: float) -> None: ...
    def close(self) -> None: ...


class _Silent:
    def phase(self, name: str, total: float | None) -> None: ...
    def advance(self, amount: float) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TrainResult:
    path: Path
    evaluation: Evaluation
    manifest: dict[str, Any]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def run(options: TrainOptions, out_root: Path, progress: Progress | None = None, *, make_current: bool = True
        ) -> TrainResult:
    """Train and evaluate on a simulated history; save the artifact under ``out_root``."""
    bar = progress or _Silent()
    timings: dict[str, float] = {}
    config = options.simulation()
    if options.test_days < 1 or options.days <= options.test_days:
        raise ValueError(f"days ({options.days}) must exceed test_days ({options.test_days}) >= 1")

    began = time.perf_counter()
    bar.phase("simulate (simulated hours)", options.days * 24)
    log: list[history.Record] = []
    last, cutoff = START, START + round(options.days * DAY_MS)
    for rec in iter_event_log(config):
        log.append(rec)
        at = rec[1]["event_time"]
        if at - last >= 3_600_000 and at <= cutoff:  # the last deliveries after the last order: not counted
            bar.advance((at - last) / 3_600_000)
            last = at
    timings["simulate"] = time.perf_counter() - began

    began = time.perf_counter()
    bar.phase("fold (driver inputs)", None)
    points = history.prediction_points(log, sample_ms=options.sample_ms, progress=bar.advance)
    data = history.label(points, history.doors(log))
    timings["fold"] = time.perf_counter() - began

    cut = START + (math.ceil(options.days) - options.test_days) * DAY_MS  # the last test_days calendar days
    train, test = history.split_at(data, cut)
    began = time.perf_counter()
    bar.phase("travel times (stop order)", 1)
    legs = travel_times.customer_legs(log)
    travel = travel_times.fit_travel_times([leg for leg in legs if leg.depart < cut])
    held_out = [leg for leg in legs if leg.depart >= cut]
    travel_errors = {"learnt": travel_times.leg_errors(held_out, travel),
                     "default": travel_times.leg_errors(held_out, TravelTimes())} if held_out else {}
    bar.advance(1)
    timings["travel_times"] = time.perf_counter() - began
    began = time.perf_counter()
    bar.phase("fit (2 models)", 2)
    models = training.fit(train, seed=options.seed, max_iter=options.max_iter)
    bar.advance(2)
    timings["fit"] = time.perf_counter() - began

    began = time.perf_counter()
    bar.phase("evaluate", 1)
    ev = evaluate(models, train, test)
    bar.advance(1)
    timings["evaluate"] = time.perf_counter() - began

    began = time.perf_counter()
    bar.phase("save", 1)
    info = {
        "data": {**asdict(options), "from": _iso(int(data.at.min())), "to": _iso(int(data.at.max())),
                 "event_time_ms": [int(data.at.min()), int(data.at.max())], "test_from": _iso(cut),
                 "log_records": len(log), "prediction_points": len(points)},
        "rows": {"train": len(train), "test": len(test)},
        "metrics": ev.metrics,
        "travel_times": {"file": TRAVEL_TIMES_FILE, "legs": len(legs), "held_out_error_s": travel_errors},
    }
    path = artifacts.save(out_root, models, info, unhashed={"timings_s": timings}, make_current=make_current,
                          extra_files={TRAVEL_TIMES_FILE: json.dumps(travel.to_json(), indent=2).encode()})
    bar.advance(1)
    timings["save"] = time.perf_counter() - began
    bar.close()
    manifest = artifacts.load_eta_model(path).manifest
    manifest["timings_s"] = timings
    return TrainResult(path, ev, manifest)
