"""Held-out evaluation of the delay-risk and ETA models against naive baselines. Pure.

* Risk: ROC-AUC, Brier score and a reliability table (predicted vs observed late rate per probability bin),
  for the model and for the naive baseline: the historical late rate of the stop's delivery slot (the Beijing
  hour its window opens), learnt from the training rows.
* ETA: mean absolute error, P50 and P90 of the absolute error (seconds), for the model and for the baseline
  estimator (``projections.eta.DistanceSpeedEta``: road distance / the van's recent speed).

The same figures are also given for the *early* predictions alone (the first 15 minutes after the dispatch,
when the whole trip is still ahead). ``TARGETS`` are the acceptance bars of the issue (on all held-out
rows); ``Evaluation.metrics`` is JSON-able (the artifact manifest
and the report carry it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.history import Dataset
from models.training import Models, predict

TARGETS = {"risk_roc_auc_min": 0.85, "eta_mae_reduction_min": 0.30}
EARLY_S = 15 * 60  # "early": predictions in the first 15 minutes after the dispatch (reported separately)
BEIJING_MS = 8 * 3_600_000


def slot_of(data: Dataset) -> np.ndarray:
    """The delivery slot of each row: the Beijing hour (0-23) its window opens."""
    start = data.at + np.nan_to_num(data.column("window_start_s")) * 1000
    return (((start + BEIJING_MS) // 3_600_000) % 24).astype(np.int64)


class SlotLateRate:
    """Naive risk: the training rows' late rate per delivery slot (the overall rate for an unseen slot)."""

    def __init__(self, train: Dataset) -> None:
        slots = slot_of(train)
        self.overall = float(train.late.mean())
        self.rates = {int(s): float(train.late[slots == s].mean()) for s in np.unique(slots)}

    def predict(self, data: Dataset) -> np.ndarray:
        return np.asarray([self.rates.get(int(s), self.overall) for s in slot_of(data)], dtype=np.float64)


def reliability(late: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width probability bin with rows: mean predicted probability, observed late rate, rows."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "predicted": float(p[mask].mean()),
                        "observed": float(late[mask].mean()), "rows": int(mask.sum())})
    return out


def abs_error_stats(err: np.ndarray) -> dict[str, float]:
    a = np.abs(err)
    return {"mae_s": float(a.mean()), "p50_s": float(np.percentile(a, 50)), "p90_s": float(np.percentile(a, 90))}


@dataclass(frozen=True, slots=True)
class Evaluation:
    metrics: dict[str, Any]
    test: Dataset
    p_model: np.ndarray
    p_baseline: np.ndarray
    eta_model_s: np.ndarray  # predicted remaining seconds
    eta_baseline_s: np.ndarray


def evaluate(models: Models, train: Dataset, test: Dataset) -> Evaluation:
    """Both models and both baselines on ``test`` (baseline risk learnt from ``train``)."""
    if len(test) == 0 or test.late.all() or not test.late.any():
        raise ValueError(f"evaluate: the test set has {len(test)} rows, {int(test.late.sum())} late; "
                         "need both classes")
    p_model, eta_model = predict(models, test.X, test.baseline_s)
    p_base = SlotLateRate(train).predict(test)
    late = test.late
    m_eta = abs_error_stats(eta_model - test.remaining_s)
    b_eta = abs_error_stats(test.baseline_s - test.remaining_s)
    reduction = 1.0 - m_eta["mae_s"] / b_eta["mae_s"] if b_eta["mae_s"] > 0 else 0.0
    auc = float(roc_auc_score(late, p_model))
    early = test.column("since_dispatch_s") < EARLY_S  # the first estimates of a trip: the hardest, most useful
    both = bool(early.any() and late[early].any() and not late[early].all())
    metrics = {
        "rows": {"train": len(train), "test": len(test)},
        "late_rate": {"train": float(train.late.mean()), "test": float(late.mean())},
        "risk": {
            "model": {"roc_auc": auc, "brier": float(brier_score_loss(late, p_model)),
                      "reliability": reliability(late, p_model)},
            "baseline_slot_rate": {"roc_auc": float(roc_auc_score(late, p_base)),
                                   "brier": float(brier_score_loss(late, p_base)),
                                   "reliability": reliability(late, p_base)},
        },
        "eta": {"model": m_eta, "baseline_distance_speed": b_eta, "mae_reduction": reduction},
        "early": {"rows": int(early.sum()), "late_rate": float(late[early].mean()) if early.any() else None,
                  "risk_roc_auc": float(roc_auc_score(late[early], p_model[early])) if both else None,
                  "baseline_risk_roc_auc": float(roc_auc_score(late[early], p_base[early])) if both else None,
                  "eta_model": abs_error_stats(eta_model[early] - test.remaining_s[early]) if early.any() else None,
                  "eta_baseline": abs_error_stats(test.baseline_s[early] - test.remaining_s[early])
                  if early.any() else None},
        "targets": dict(TARGETS),
        "targets_met": {"risk_roc_auc": auc >= TARGETS["risk_roc_auc_min"],
                        "eta_mae_reduction": reduction >= TARGETS["eta_mae_reduction_min"]},
    }
    return Evaluation(metrics, test, p_model, p_base, eta_model, test.baseline_s)


def error_by(values: np.ndarray, err_model: np.ndarray, err_base: np.ndarray, edges: list[float]
             ) -> list[dict[str, float]]:
    """MAE of model and baseline per bin ``[edges[i], edges[i+1])`` of ``values`` (NaN values skipped)."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (values >= lo) & (values < hi)
        if mask.any():
            out.append({"lo": lo, "hi": hi, "rows": int(mask.sum()),
                        "model_mae_s": float(np.abs(err_model[mask]).mean()),
                        "baseline_mae_s": float(np.abs(err_base[mask]).mean())})
    return out
