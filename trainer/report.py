"""The model report: ``docs/model-report/index.md`` and its PNG plots, from a held-out ``Evaluation``.

``write_report(evaluation, manifest, out_dir, extra_sections)`` writes the markdown (data, metrics against the
naive baselines and the targets, calibration table, error by hour and by traffic) and the plots (matplotlib,
Agg backend: ROC, calibration, ETA absolute-error distribution, error by hour, error by traffic index).
``extra_sections`` are ``(title, markdown)`` pairs appended as they are (other evaluations: stock
replenishment, routes). I/O only under ``out_dir``.

``python -m trainer.report`` is ``kuailv report``: weeks of simulated history, trained and evaluated, then this.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import Evaluation, error_by
from models.features import beijing_hour

HOUR_EDGES = [float(h) for h in range(0, 25, 2)]
TRAFFIC_EDGES = [1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 5.0]


def _plots(ev: Evaluation, out: Path) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    test = ev.test
    late = test.late
    err_m = ev.eta_model_s - test.remaining_s
    err_b = ev.eta_baseline_s - test.remaining_s
    hours = np.asarray([beijing_hour(int(a)) for a in test.at])
    traffic = test.column("traffic_index")
    by_hour = error_by(hours, err_m, err_b, HOUR_EDGES)
    by_traffic = error_by(traffic, err_m, err_b, TRAFFIC_EDGES)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in (("model", ev.p_model), ("baseline: slot late rate", ev.p_baseline)):
        fpr, tpr, _ = roc_curve(late, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Delay risk: ROC (held-out days)")
    ax.legend(loc="lower right")
    fig.savefig(out / "roc.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, key in (("model", "model"), ("baseline: slot late rate", "baseline_slot_rate")):
        rel = ev.metrics["risk"][key]["reliability"]
        ax.plot([r["predicted"] for r in rel], [r["observed"] for r in rel], "o-", label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="predicted P(late)", ylabel="observed late rate", title="Delay risk: calibration")
    ax.legend(loc="upper left")
    fig.savefig(out / "calibration.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    top = float(np.percentile(np.abs(np.concatenate([err_m, err_b])), 99)) / 60
    bins = np.linspace(0, max(top, 1.0), 50)
    ax.hist(np.abs(err_b) / 60, bins=bins, alpha=0.5, label="baseline: distance / speed")
    ax.hist(np.abs(err_m) / 60, bins=bins, alpha=0.5, label="model")
    ax.set(xlabel="absolute error, minutes", ylabel="predictions", title="ETA: absolute error (held-out days)")
    ax.legend()
    fig.savefig(out / "eta_error.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    for name, rows, xlabel, title in (
            ("error_by_hour", by_hour, "Beijing hour of the prediction", "ETA error by hour"),
            ("error_by_traffic", by_traffic, "traffic index reported to the van", "ETA error by traffic")):
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['lo']:g}-{r['hi']:g}" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["baseline_mae_s"] / 60 for r in rows], 0.4, label="baseline")
        ax.bar(x + 0.2, [r["model_mae_s"] / 60 for r in rows], 0.4, label="model")
        ax.set_xticks(x, labels, rotation=45)
        ax.set(xlabel=xlabel, ylabel="MAE, minutes", title=title)
        ax.legend()
        fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    return {"by_hour": by_hour, "by_traffic": by_traffic}


def _m(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _early(m: dict[str, Any]) -> list[str]:
    e = m.get("early") or {}
    if not e.get("risk_roc_auc") or not e.get("eta_model"):
        return []
    return [
        "",
        f"Early predictions only (the first 15 minutes after the dispatch, the whole trip ahead; {e['rows']:,} rows, "
        f"late rate {e['late_rate']:.1%}): delay risk ROC-AUC {e['risk_roc_auc']:.3f} (baseline "
        f"{e['baseline_risk_roc_auc']:.3f}); ETA MAE {_m(e['eta_model']['mae_s'])} vs "
        f"{_m(e['eta_baseline']['mae_s'])}, "
        f"P90 {_m(e['eta_model']['p90_s'])} vs {_m(e['eta_baseline']['p90_s'])}.",
        "",
    ]


def render(ev: Evaluation, manifest: dict[str, Any], tables: dict[str, Any],
           extra_sections: Sequence[tuple[str, str]] = ()) -> str:
    """The markdown of the report."""
    m = ev.metrics
    risk, base_risk = m["risk"]["model"], m["risk"]["baseline_slot_rate"]
    eta, base_eta = m["eta"]["model"], m["eta"]["baseline_distance_speed"]
    met = m["targets_met"]
    data = manifest.get("data", {})
    lines = [
        "# Delay-risk and ETA models: evaluation",
        "",
        "Generated by `make report` (`kuailv report`): a seeded simulation of the city "
        "(`simulator`, with weather and traffic from `simulator.conditions`) replayed through the pure "
        "projections (`models.history`); the last whole days are held out. Do not edit by hand.",
        "",
        f"* model: `{manifest.get('name')}/{manifest.get('version')}`, scikit-learn {manifest.get('sklearn_version')}",
        f"* simulation: seed {data.get('seed')}, {data.get('days')} days, {data.get('orders_per_hour')} orders/hour, "
        f"event time {data.get('from')} .. {data.get('to')}",
        f"* rows (prediction points x stops on board): {m['rows']['train']:,} train, {m['rows']['test']:,} test "
        f"(held out: the last {data.get('test_days')} day(s)); late rate {m['late_rate']['train']:.1%} train, "
        f"{m['late_rate']['test']:.1%} test",
        "",
        "## Results on the held-out days",
        "",
        "| | model | naive baseline | target | met |",
        "|---|---|---|---|---|",
        f"| delay risk ROC-AUC | {risk['roc_auc']:.3f} | {base_risk['roc_auc']:.3f} (late rate of the delivery slot) "
        f"| >= {m['targets']['risk_roc_auc_min']} | {'yes' if met['risk_roc_auc'] else 'NO'} |",
        f"| delay risk Brier score | {risk['brier']:.4f} | {base_risk['brier']:.4f} | lower is better | |",
        f"| ETA MAE | {_m(eta['mae_s'])} | {_m(base_eta['mae_s'])} (distance / recent speed) "
        f"| >= {m['targets']['eta_mae_reduction_min']:.0%} lower | {'yes' if met['eta_mae_reduction'] else 'NO'} "
        f"({m['eta']['mae_reduction']:.1%} lower) |",
        f"| ETA P50 absolute error | {_m(eta['p50_s'])} | {_m(base_eta['p50_s'])} | | |",
        f"| ETA P90 absolute error | {_m(eta['p90_s'])} | {_m(base_eta['p90_s'])} | | |",
        "",
        *_early(m),
        "ETA is the door time (the delivery, refusal or door exception of the dispatch); late = door time after "
        "the window end. Remaining time is predicted as a correction (log-ratio) to the baseline estimate.",
        "",
        "![ROC](roc.png) ![calibration](calibration.png)",
        "",
        "### Calibration of the delay risk (model)",
        "",
        "| predicted bin | mean predicted | observed late rate | rows |",
        "|---|---|---|---|",
        *[f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['predicted']:.3f} | {r['observed']:.3f} | {r['rows']:,} |"
          for r in risk["reliability"]],
        "",
        "## ETA error",
        "",
        "![ETA absolute error](eta_error.png)",
        "",
    ]
    for title, key, image in (("By Beijing hour", "by_hour", "error_by_hour.png"),
                              ("By reported traffic index", "by_traffic", "error_by_traffic.png")):
        lines += [f"### {title}", "", "| bin | rows | model MAE | baseline MAE |", "|---|---|---|---|"]
        lines += [f"| {r['lo']:g}-{r['hi']:g} | {r['rows']:,} | {_m(r['model_mae_s'])} | {_m(r['baseline_mae_s'])} |"
                  for r in tables[key]]
        lines += ["", f"![{title}]({image})", ""]
    timings = manifest.get("timings_s")
    if timings:
        lines += ["## Run", "", *[f"* {k}: {v:.1f} s" for k, v in timings.items()], ""]
    for title, body in extra_sections:
        lines += [f"## {title}", "", body.rstrip(), ""]
    return "\n".join(lines)


def write_report(ev: Evaluation, manifest: dict[str, Any], out_dir: Path,
                 extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``index.md`` and the plots under ``out_dir``; returns the markdown's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = _plots(ev, out_dir)
    path = out_dir / "index.md"
    path.write_text(render(ev, manifest, tables, extra_sections) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    from cli.train import main

    sys.exit(main(["report", *sys.argv[1:]]))
