"""``LearntEta``: the learnt ETA and delay-risk models behind the ``projections.eta.EtaEstimator`` seam. Pure.

``estimate(van, stops)`` computes the stops' ``models.features.feature_rows`` (the same function training
used), asks each model once for the whole route (one 2-D array, one prediction per model), and returns one
``Eta`` per stop with ``late_risk`` = P(door time > window end). Predictions go through
``models.fast_forest`` (all trees at once: a few hundred µs instead of milliseconds for a route), checked
bit-for-bit against scikit-learn's ``predict`` on probe rows when the estimator is built; should they ever
differ, scikit-learn's own ``predict`` is used. ETAs are ``van.at`` + the predicted
remaining time, made non-decreasing along the route (a later stop is never estimated before an earlier one),
so the protocol's guarantees hold whatever the model says. Deterministic: the models are fixed after load.

scikit-learn's ``predict`` (the fallback) runs on one OpenMP thread: a route is a handful of rows, and waking a
thread pool per call costs far more than it saves (tens of milliseconds on a busy machine instead of a few).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from models.fast_forest import FastModel
from models.features import FEATURES, feature_rows
from models.training import Models, remaining_from
from projections.eta import DEFAULT_ROAD_FACTOR, Eta, Stop, VanSnapshot

_BASELINE = FEATURES.index("baseline_s")
_ROAD = FEATURES.index("road_m")
_THREADS = ThreadpoolController()


class LearntEta:
    """An ``EtaEstimator`` from fitted ``Models``; ``name`` (e.g. ``hgb/<version>``) goes into every OrderEta."""

    __slots__ = ("fast", "models", "name", "road_factor")

    def __init__(self, models: Models, name: str = "hgb/unversioned", road_factor: float = DEFAULT_ROAD_FACTOR) -> None:
        if tuple(models.features) != FEATURES:
            raise ValueError(f"LearntEta: the models' features {list(models.features)} are not the code's "
                             f"{list(FEATURES)}")
        self.models = models
        self.name = name
        self.road_factor = road_factor
        self.fast = _fast(models)

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        if not stops:
            return []
        X = np.asarray(feature_rows(van, stops, self.road_factor), dtype=np.float64)
        if self.fast is not None:
            risk = self.fast[0].predict_late(X)
            ratio = self.fast[1].predict(X)
        else:
            with _THREADS.limit(limits=1, user_api="openmp"):
                risk = self.models.risk.predict_proba(X)[:, 1]
                ratio = self.models.eta.predict(X)
        remaining = remaining_from(ratio, X[:, _BASELINE])
        etas: list[Eta] = []
        latest = van.at
        for i, stop in enumerate(stops):
            latest = max(latest, van.at + round(float(remaining[i]) * 1000))
            etas.append(Eta(stop.order_id, latest, float(X[i, _ROAD]), i, float(risk[i])))
        return etas


def _fast(models: Models) -> tuple[FastModel, FastModel] | None:
    """Flat forests of both models, if they reproduce scikit-learn exactly on probe rows (thresholds of the
    trees themselves, so every branch is tried, and missing values); None otherwise."""
    try:
        risk, eta = FastModel(models.risk), FastModel(models.eta)
    except (AttributeError, ValueError, KeyError):
        return None
    rng = np.random.default_rng(0)
    probe = np.empty((64, len(FEATURES)))
    splits = [(f.feature[f.left != np.arange(len(f.left))], f.threshold[f.left != np.arange(len(f.left))])
              for f in (risk.forest, eta.forest)]
    for j in range(len(FEATURES)):
        cuts = np.concatenate([thresholds[features == j] for features, thresholds in splits])
        probe[:, j] = rng.choice(cuts, 64) if len(cuts) else rng.normal(size=64)
    probe[::7, :] = np.nan
    probe[3::5, 2] = np.nan
    with _THREADS.limit(limits=1, user_api="openmp"):
        same = (np.array_equal(risk.predict_late(probe), models.risk.predict_proba(probe)[:, 1])
                and np.array_equal(eta.predict(probe), models.eta.predict(probe)))
    return (risk, eta) if same else None
