"""A fitted HistGradientBoosting model's trees as flat numpy arrays, predicted all at once. Pure.

scikit-learn predicts tree by tree (a Python-level call per tree, ~15 µs each), which for the handful of rows
of one van's route costs milliseconds. ``FlatForest`` copies the trees' nodes (feature, threshold, where a
missing value goes, children, leaf value) into flat arrays and walks every tree for every row together,
one depth level per numpy step: the same decisions as ``TreePredictor.predict`` (NaN follows
``missing_go_to_left``, else ``x <= threshold`` goes left), and the leaf values are added in tree order onto
the baseline, as ``_raw_predict`` does, so the raw predictions are bit-for-bit the same.

It reads private attributes of the fitted estimator (``_predictors``, ``_baseline_prediction``, ``_loss``),
which is safe because an artifact only loads with the scikit-learn version that wrote it
(``trainer.artifacts``), and ``LearntEta`` checks it against ``predict`` on probe rows at load anyway.
Numerical features and one tree per iteration (regression, binary classification) only.

With numba installed (a dependency of the worker's venv), the walk is one compiled loop per row and tree
(``_walk``: a few microseconds for a route of a handful of rows, where the numpy level-by-level walk costs a few
hundred, mostly in per-call overhead); the additions are the same, in the same order, so the result is the same
to the bit. Without numba (an engine's venv that lacks it) the numpy walk runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # compiled at the first call (about a second, at model load: LearntEta checks the forest on probe rows)
    from numba import njit
except ImportError:  # pragma: no cover - exercised only in a venv without numba
    njit = None


def _walk_rows(X: np.ndarray, roots: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
               missing_left: np.ndarray, left: np.ndarray, right: np.ndarray, value: np.ndarray,
               baseline: float, out: np.ndarray) -> None:
    """Every tree for every row: ``out[i]`` = baseline + the leaf values of row i, added in tree order."""
    for i in range(X.shape[0]):
        acc = baseline
        for t in range(roots.shape[0]):
            node = roots[t]
            while left[node] != node:  # a leaf points at itself
                x = X[i, feature[node]]
                go_left = missing_left[node] if x != x else x <= threshold[node]  # x != x: NaN (missing)
                node = left[node] if go_left else right[node]
            acc += value[node]
        out[i] = acc


_walk = njit(cache=False, nogil=True)(_walk_rows) if njit is not None else None


class FlatForest:
    """The trees of a fitted ``HistGradientBoostingRegressor`` / binary ``...Classifier``."""

    def __init__(self, model: Any) -> None:
        predictors = model._predictors
        if any(len(it) != 1 for it in predictors):
            raise ValueError("FlatForest: only one tree per iteration (regression, binary classification)")
        if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
            raise ValueError("FlatForest: categorical features are not supported")
        nodes = [it[0].nodes for it in predictors]
        sizes = np.asarray([len(n) for n in nodes], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        allnodes = np.concatenate(nodes)
        shift = np.repeat(offsets, sizes)
        leaf = allnodes["is_leaf"].astype(bool)
        own = np.arange(len(allnodes), dtype=np.intp)
        self.feature = np.where(leaf, 0, allnodes["feature_idx"]).astype(np.intp)
        self.threshold = allnodes["num_threshold"].astype(np.float64)
        self.missing_left = allnodes["missing_go_to_left"].astype(bool)
        self.left = np.where(leaf, own, allnodes["left"].astype(np.intp) + shift)  # a leaf points at itself
        self.right = np.where(leaf, own, allnodes["right"].astype(np.intp) + shift)
        self.value = allnodes["value"].astype(np.float64)
        self.roots = offsets
        self.depth = int(allnodes["depth"].max()) if len(allnodes) else 0
        self.baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        self.n_features = int(model.n_features_in_)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The raw prediction (before the link's inverse) of each row of ``X`` (float64, n x n_features)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"FlatForest: X has shape {X.shape}, expected (n, {self.n_features})")
        n = X.shape[0]
        if _walk is not None:
            out = np.empty(n, dtype=np.float64)
            _walk(np.ascontiguousarray(X), self.roots, self.feature, self.threshold, self.missing_left, self.left,
                  self.right, self.value, self.baseline, out)
            return out
        return self.raw_numpy(X)

    def raw_numpy(self, X: np.ndarray) -> np.ndarray:
        """``raw`` by numpy, one depth level of every tree per step (the fallback without numba)."""
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        node = np.repeat(self.roots[None, :], n, axis=0)
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        values = np.concatenate([np.full((n, 1), self.baseline), self.value[node]], axis=1)
        return np.cumsum(values, axis=1)[:, -1]  # sequential, in tree order: the same float sums as sklearn


class FastModel:
    """``predict`` / ``predict_proba`` of a fitted HistGradientBoosting model through a ``FlatForest``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.forest = FlatForest(model)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regressor: the prediction (the loss link's inverse of the raw sum)."""
        return np.asarray(self.model._loss.link.inverse(self.forest.raw(X)))

    def predict_late(self, X: np.ndarray) -> np.ndarray:
        """Binary classifier: P(class 1)."""
        return np.asarray(self.model._loss.predict_proba(self.forest.raw(X)))[:, 1]
