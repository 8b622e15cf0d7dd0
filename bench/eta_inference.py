"""Benchmark: what the learnt ETA / delay-risk model and the OR-Tools stop order cost in the driver fold.

    python -m bench.eta_inference [--orders 240] [--drivers 20] [--model DIR]

One seeded simulated history (orders, GPS every 5 s, road conditions, van orders derived from the order
views) is folded per driver through ``projections.geofence.step`` three times, in this run:

* the baseline: ``DistanceSpeedEta``, nearest-neighbour stop order (what the fold did before models);
* the learnt model: ``models.learnt_eta.LearntEta`` (two gradient-boosted models, one ``predict`` each per
  estimate: every 30 s of a driver's event time for all the orders on board);
* the learnt model and the OR-Tools planner (``projections.routing.plan_stops``, when the van's stops change).

Printed: input records/s of each, the ratio to the baseline, microseconds per estimate call and per stop
(p50/p99, timed around the estimator inside the fold), the planner's microseconds per call, and the cost per
input record the model adds. The model is ``--model``, else the current trained one
(``KUAILV_ETA_MODEL`` / ``<state>/models/eta``), else one trained here on two simulated days (about a minute).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.settings import load as load_settings
from projections.eta import DistanceSpeedEta, Eta, Stop, VanSnapshot
from projections.geofence import GeoContext, step
from projections.van_eta import EtaSettings
from simulator.config import SimulationConfig
from simulator.traffic import event_log

CHUNK = 500  # driver inputs per step, as a worker batch would hand them over


class Timed:
    """Wraps an estimator (or planner) and records the nanoseconds and the stops of every call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.road_factor = getattr(inner, "road_factor", 1.35)
        self.ns: list[int] = []
        self.stops: list[int] = []

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        t = time.perf_counter_ns()
        out = self.inner.estimate(van, stops)
        self.ns.append(time.perf_counter_ns() - t)
        self.stops.append(len(stops))
        return out

    def __call__(self, lat: float, lng: float, at: int, stops: Sequence[Stop]) -> list[str]:
        t = time.perf_counter_ns()
        out = self.inner(lat, lng, at, stops)
        self.ns.append(time.perf_counter_ns() - t)
        self.stops.append(len(stops))
        return out


def driver_inputs(log: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, dict[str, Any], Any]]]:
    """Per driver, in log order: its pings, road conditions and the VanOrder records the order views imply."""
    from projections import order_state
    from projections.order_status import ORDER_EVENT_TYPES
    from projections.van_orders import van_order_records

    states: dict[str, Any] = {}
    out: dict[str, list[tuple[str, dict[str, Any], Any]]] = {}
    for record_type, r in log:
        if record_type in ("GpsPing", "RoadConditions"):
            out.setdefault(r["driver_id"], []).append((record_type, r, None))
        elif record_type in ORDER_EVENT_TYPES:
            before = states.get(r["order_id"])
            res = order_state.fold(before, record_type, r, trace=True)
            states[r["order_id"]] = res.state
            prev = before["view"] if before else None
            for view in res.views:
                for v in van_order_records(prev, view):
                    out.setdefault(v["driver_id"], []).append(("VanOrder", v, None))
                prev = view
    return out


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def fold_all(inputs: dict[str, list[Any]], estimator: Any, planner: Any = None) -> tuple[float, int, int]:
    """Seconds to fold every driver's inputs; (seconds, records, OrderEta records)."""
    from models.history import default_fences

    ctx = GeoContext(default_fences(), 30_000, EtaSettings(estimator, soon_ms=10 * 60_000, planner=planner,
                                                           likely_late=(0.7, 0.4)))
    records = etas = 0
    began = time.perf_counter()
    for driver in sorted(inputs):
        items, state = inputs[driver], None
        for i in range(0, len(items), CHUNK):
            out = step(state, items[i:i + CHUNK], ctx)
            state = out.state
            etas += len(out.etas)
        records += len(items)
    return time.perf_counter() - began, records, etas


def the_model(path: str | None) -> tuple[Any, Path, tempfile.TemporaryDirectory[str] | None]:
    from config.eta_model import artifact_path
    from trainer.artifacts import load_estimator

    if path:
        return load_estimator(Path(path)), Path(path), None
    settings = load_settings()
    artifact = artifact_path(settings) if settings.eta_model != "baseline" else None
    if artifact is not None:
        return load_estimator(artifact), artifact, None
    from trainer.pipeline import TrainOptions, run

    tmp = tempfile.TemporaryDirectory(prefix="kuailv-bench-model-")
    print("no trained model: training one on 2 simulated days (kuailv train --quick does the same)")
    result = run(TrainOptions(days=2.0, orders_per_hour=25.0, max_iter=150), Path(tmp.name))
    return load_estimator(result.path), result.path, tmp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=240)
    p.add_argument("--drivers", type=int, default=20)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--model", help="a model artifact directory (default: the current trained one)")
    args = p.parse_args(argv)

    model, artifact, tmp = the_model(args.model)
    log = event_log(SimulationConfig(seed=args.seed, orders=args.orders, orders_per_hour=30.0,
                                     n_drivers=args.drivers, sensor_interval_s=3600.0))
    inputs = driver_inputs(log)
    print(f"history: {len(log):,} records, {sum(map(len, inputs.values())):,} driver inputs (GPS every 5 s, "
          f"road conditions, van orders) of {len(inputs)} drivers; model {model.name} ({artifact})")

    planner = None
    travel = artifact / "travel_times.json"
    if travel.is_file():
        from config.eta_model import load_travel_times
        from projections.routing import plan_stops

        tt = load_travel_times(travel)
        planner = Timed(lambda lat, lng, at, stops: list(plan_stops((lat, lng), at, stops, tt).order))

    fold_all(inputs, DistanceSpeedEta())  # warm-up: imports, allocator
    base = Timed(DistanceSpeedEta())
    learnt = Timed(model)
    runs = [("baseline (distance-speed, nearest neighbour)", base, None),
            ("learnt model (risk + ETA)", learnt, None)]
    if planner is not None:
        runs.append(("learnt model + OR-Tools stop order", Timed(model), planner))
    results = []
    for label, est, plan in runs:
        seconds, records, etas = fold_all(inputs, est, plan)
        results.append((label, est, plan, seconds, records, etas))

    base_s = results[0][3]
    print(f"\n{'fold':<46} {'records/s':>11} {'vs baseline':>12} {'OrderEta':>9} {'estimates':>10} "
          f"{'us/estimate p50/p99':>21} {'us/stop':>8}")
    for label, est, _plan, seconds, records, etas in results:
        per_stop = sum(est.ns) / max(1, sum(est.stops)) / 1000.0
        print(f"{label:<46} {records / seconds:>11,.0f} {base_s / seconds:>11.2f}x {etas:>9,} {len(est.ns):>10,} "
              f"{pct(est.ns, 0.5):>10.1f}/{pct(est.ns, 0.99):<10.1f} {per_stop:>8.1f}")
    learnt_s = results[1][3]
    records = results[1][4]
    print(f"\nthe model adds {(learnt_s - base_s) / records * 1e6:.1f} us per input record "
          f"({(learnt_s - base_s) / max(1, len(learnt.ns)) * 1e6:.0f} us per estimate, "
          f"{sum(learnt.stops) / max(1, len(learnt.ns)):.1f} stops per estimate)")
    if planner is not None:
        print(f"OR-Tools planner: {len(planner.ns):,} calls (when a van's stops change), p50 "
              f"{pct(planner.ns, 0.5):,.0f} us, p99 {pct(planner.ns, 0.99):,.0f} us, "
              f"{sum(planner.stops) / max(1, len(planner.ns)):.1f} stops per call")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
