"""``kuailv train`` and ``kuailv report``: fit the delay-risk and ETA models on simulated history, evaluate them.

``kuailv train`` simulates ``--days`` of the city (seeded), replays them through the pure projections,
fits both models, evaluates them on the held-out last day(s), saves a versioned artifact under ``--out``
(default ``<state_dir>/models/eta``, marked ``current``) and prints the metrics. ``--quick`` is a small run
(about a minute) for a fresh setup. ``kuailv report`` does the same on weeks of history and writes
``docs/model-report/`` (``trainer.report``). A tqdm bar per phase: simulate, fold, fit, evaluate, save.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from config import settings as settings_mod

QUICK = {"days": 3, "orders_per_hour": 20.0, "max_iter": 100}
REPORT = {"days": 21, "orders_per_hour": 24.0, "test_days": 3}
DEFAULT = {"days": 7, "orders_per_hour": 30.0, "test_days": 1}
REPORT_DIR = Path(__file__).resolve().parents[1] / "docs" / "model-report"


class TqdmProgress:
    """``trainer.pipeline.Progress`` as one tqdm bar per phase (on stderr)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def phase(self, name: str, total: float | None) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, desc=name, unit="", disable=not self.enabled, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}]" if total
                        else "{desc}: {n:,.0f} [{elapsed}]")

    def advance(self, amount: float) -> None:
        if self.bar is not None:
            self.bar.update(amount)

    def close(self) -> None:
        if self.bar is not None:
            if self.bar.total:
                self.bar.n = self.bar.total
            self.bar.refresh()
            self.bar.close()
            self.bar = None


def _options(args: argparse.Namespace, preset: dict[str, Any]) -> Any:
    from trainer.pipeline import TrainOptions

    values = {**DEFAULT, **preset}
    for key in ("days", "orders_per_hour", "test_days", "seed"):
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    return TrainOptions(**values)


def _summary(result: Any) -> str:
    m = result.evaluation.metrics
    risk, base_risk = m["risk"]["model"], m["risk"]["baseline_slot_rate"]
    eta, base_eta = m["eta"]["model"], m["eta"]["baseline_distance_speed"]
    met = m["targets_met"]
    return "\n".join([
        f"rows: {m['rows']['train']:,} train, {m['rows']['test']:,} held out; late rate {m['late_rate']['test']:.1%}",
        f"delay risk ROC-AUC {risk['roc_auc']:.3f} (baseline {base_risk['roc_auc']:.3f}), Brier {risk['brier']:.4f} "
        f"(baseline {base_risk['brier']:.4f}) -> target >= {m['targets']['risk_roc_auc_min']}: "
        f"{'met' if met['risk_roc_auc'] else 'NOT met'}",
        f"ETA MAE {eta['mae_s'] / 60:.1f} min vs baseline {base_eta['mae_s'] / 60:.1f} min "
        f"({m['eta']['mae_reduction']:.1%} lower; P50 {eta['p50_s'] / 60:.1f} / P90 {eta['p90_s'] / 60:.1f} min) "
        f"-> target >= {m['targets']['eta_mae_reduction_min']:.0%}: {'met' if met['eta_mae_reduction'] else 'NOT met'}",
        *_travel_line(result.manifest),
        f"artifact: {result.path} (version {result.manifest['version']}, current)",
    ])


def _travel_line(manifest: dict[str, Any]) -> list[str]:
    errors = (manifest.get("travel_times") or {}).get("held_out_error_s") or {}
    if not errors:
        return []
    learnt, default = errors["learnt"], errors["default"]
    return [f"travel times for the stop order: mean error per leg {learnt['mae_s'] / 60:.1f} min on held-out legs "
            f"vs {default['mae_s'] / 60:.1f} min with the defaults ({learnt['legs']:,} legs)"]


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.pipeline import run

    s = settings_mod.load(args.profile)
    out = Path(args.out) if args.out else s.state_dir / "models" / "eta"
    if args.if_stale:
        current = _current(out)
        if current is not None:
            print(f"model {current} under {out} loads and matches the code; not retraining (without --if-stale "
                  "it would)")
            return 0
        print(f"no usable model under {out}: training one")
    result = run(_options(args, QUICK if args.quick else {}), out, TqdmProgress(not args.no_progress))
    print(_summary(result))
    return 0


def _current(out: Path) -> str | None:
    """The version ``out/current`` names when it loads as the engines would load it (and has its travel times)."""
    from trainer.artifacts import TRAVEL_TIMES_FILE, ArtifactError, load_eta_model

    try:
        loaded = load_eta_model(out)
    except (ArtifactError, OSError, ValueError):
        return None
    return loaded.version if (loaded.path / TRAVEL_TIMES_FILE).is_file() else None


def cmd_report(args: argparse.Namespace) -> int:
    from trainer.pipeline import run
    from trainer.report import write_report

    s = settings_mod.load(args.profile)
    out = Path(args.out) if args.out else s.state_dir / "models" / "eta"
    result = run(_options(args, REPORT), out, TqdmProgress(not args.no_progress))
    print(_summary(result))
    sections = []
    if not args.no_decisions:
        from models.route_evaluation import route_report_section
        from models.stock_evaluation import stock_report_section

        print("stock: the current replenishment policy vs the suggestions over 4 simulated weeks, 3 seeds ...",
              flush=True)
        sections.append(stock_report_section(seed=args.seed or 42, weeks=4, seeds=3))
        print("routes: the simulator's stop order vs OR-Tools over 2 simulated days ...", flush=True)
        sections.append(route_report_section(seed=args.seed or 42, days=2))
    path = write_report(result.evaluation, result.manifest, Path(args.report_dir), sections)
    print(f"report: {path}")
    return 0


def _common(p: argparse.ArgumentParser, days_help: str) -> None:
    p.add_argument("--days", type=int, default=None, help=days_help)
    p.add_argument("--seed", type=int, default=None, help="simulation and model seed (default 42)")
    p.add_argument("--orders-per-hour", dest="orders_per_hour", type=float, default=None)
    p.add_argument("--test-days", dest="test_days", type=int, default=None, help="last whole days held out")
    p.add_argument("--out", default=None, help="artifact root (default <state_dir>/models/eta)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parsers(sub: Any) -> None:
    """Register ``train`` and ``report`` on the ``kuailv`` subcommand parsers."""
    t = sub.add_parser("train", help="fit the delay-risk and ETA models on simulated history (models/)")
    _common(t, f"days of simulated history (default {DEFAULT['days']}, --quick {QUICK['days']})")
    t.add_argument("--quick", action="store_true", help="a small run (about a minute), e.g. for a fresh setup")
    t.add_argument("--if-stale", dest="if_stale", action="store_true",
                   help="train only when the current model is missing or no longer loads (other features, "
                        "another scikit-learn version, no travel times): what setup runs")
    t.set_defaults(fn=cmd_train)
    r = sub.add_parser("report", help="train on weeks of history and write docs/model-report/ (make report)")
    _common(r, f"days of simulated history (default {REPORT['days']})")
    r.add_argument("--report-dir", dest="report_dir", default=str(REPORT_DIR))
    r.add_argument("--no-decisions", dest="no_decisions", action="store_true",
                   help="leave out the stock-replenishment and route evaluations (several minutes)")
    r.set_defaults(fn=cmd_report)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m trainer.report``): ``train ...`` or ``report ...``."""
    parser = argparse.ArgumentParser(prog="kuailv")
    parser.add_argument("--profile", default=None)
    add_parsers(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
