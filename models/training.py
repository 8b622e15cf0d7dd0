"""Fit the delay-risk classifier and the remaining-time regressor on a ``models.history.Dataset``. Pure, seeded.

* risk: ``HistGradientBoostingClassifier`` (log loss) for P(door time > window end);
* ETA: ``HistGradientBoostingRegressor`` on ``log((remaining + 60 s) / (baseline + 60 s))``, the log-ratio of the
  truth to the baseline estimator, with the absolute-error loss (its median: what MAE rewards). Predicting
  a correction to the baseline keeps the model sane far outside the training distances.

Both are deterministic for a given dataset and ``seed`` (``random_state``; no early stopping, whose validation
split would be random). Fitting runs on ``threads`` OpenMP threads (1 by default: on a machine shared with the
stream engines, a spinning thread pool is slower than one thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from models.features import FEATURES
from models.history import Dataset

OFFSET_S = 60.0  # keeps the log-ratio finite for a van at the door


@dataclass(frozen=True, slots=True)
class Models:
    risk: HistGradientBoostingClassifier
    eta: HistGradientBoostingRegressor
    features: tuple[str, ...] = FEATURES


def eta_target(remaining_s: np.ndarray, baseline_s: np.ndarray) -> np.ndarray:
    return np.log((np.maximum(remaining_s, 0.0) + OFFSET_S) / (np.maximum(baseline_s, 0.0) + OFFSET_S))


def remaining_from(pred: np.ndarray, baseline_s: np.ndarray) -> np.ndarray:
    """Seconds to the stop from a predicted log-ratio (``eta_target``'s inverse), never negative."""
    return np.maximum((np.maximum(baseline_s, 0.0) + OFFSET_S) * np.exp(pred) - OFFSET_S, 0.0)


def fit(data: Dataset, seed: int = 0, max_iter: int = 150, threads: int | None = 1) -> Models:
    """Both models on all rows of ``data`` (``threads`` None: as many as OpenMP likes)."""
    if len(data) < 50 or data.late.all() or not data.late.any():
        raise ValueError(f"fit: {len(data)} rows with {int(data.late.sum())} late; need >= 50 rows of both classes")
    risk = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31,
                                          min_samples_leaf=40, l2_regularization=1.0, early_stopping=False,
                                          random_state=seed)
    with threadpool_limits(threads, "openmp"):
        risk.fit(data.X, data.late)
    eta = HistGradientBoostingRegressor(loss="absolute_error", max_iter=max_iter, learning_rate=0.1,
                                        max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0,
                                        early_stopping=False, random_state=seed)
    with threadpool_limits(threads, "openmp"):
        eta.fit(data.X, eta_target(data.remaining_s, data.baseline_s))
    return Models(risk, eta)


def predict(models: Models, X: np.ndarray, baseline_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(late), remaining seconds) per row of ``X``."""
    with threadpool_limits(1, "openmp"):
        return models.risk.predict_proba(X)[:, 1], remaining_from(models.eta.predict(X), baseline_s)
