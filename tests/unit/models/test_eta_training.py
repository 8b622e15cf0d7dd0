"""models.training / evaluation / artifacts / learnt_eta: seeded fits, checked artifacts, a well-behaved estimator."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from models import training
from models.evaluation import SlotLateRate, evaluate, reliability
from models.features import FEATURES
from models.learnt_eta import LearntEta
from projections.eta import Stop, VanSnapshot
from tests.unit.models.eta_history import small_models, split
from trainer import artifacts
from trainer.artifacts import load_estimator

AT = 1_780_272_000_000


def test_training_is_deterministic_and_beats_the_naive_baselines() -> None:
    train, test = split()
    again = training.fit(train, seed=3, max_iter=40)
    p1, r1 = training.predict(small_models(), test.X, test.baseline_s)
    p2, r2 = training.predict(again, test.X, test.baseline_s)
    assert np.array_equal(p1, p2) and np.array_equal(r1, r2)
    m = evaluate(small_models(), train, test).metrics
    # a small history (a morning's trips) already separates late from on time and beats distance / speed
    assert m["risk"]["model"]["roc_auc"] > 0.8 > m["risk"]["baseline_slot_rate"]["roc_auc"]
    assert m["risk"]["model"]["brier"] < m["risk"]["baseline_slot_rate"]["brier"]
    assert m["eta"]["model"]["mae_s"] < 0.85 * m["eta"]["baseline_distance_speed"]["mae_s"]
    assert sum(b["rows"] for b in m["risk"]["model"]["reliability"]) == len(test)


def test_eta_target_round_trips_and_never_goes_negative() -> None:
    rem = np.array([0.0, 30.0, 600.0, 5400.0])
    base = np.array([100.0, 0.0, 900.0, 3000.0])
    assert np.allclose(training.remaining_from(training.eta_target(rem, base), base), rem)
    assert (training.remaining_from(np.array([-9.0, -9.0]), np.array([0.0, 10.0])) >= 0).all()


def test_fit_refuses_a_single_class() -> None:
    train, _ = split()
    with pytest.raises(ValueError, match="both classes"):
        training.fit(train.take(~train.late))


def test_slot_baseline_and_reliability_bins() -> None:
    train, test = split()
    p = SlotLateRate(train).predict(test)
    assert ((p >= 0) & (p <= 1)).all()
    bins = reliability(np.array([True, False, False, True]), np.array([0.95, 0.05, 0.15, 0.5]), bins=10)
    assert [(b["lo"], b["observed"], b["rows"]) for b in bins] == [(0.0, 0.0, 1), (0.1, 0.0, 1), (0.5, 1.0, 1),
                                                                   (0.9, 1.0, 1)]


def _save(root: Path) -> Path:
    return artifacts.save(root, small_models(), {"metrics": {"x": 1}, "data": {"seed": 9, "days": 0.5}})


def test_artifact_round_trip_version_and_current(tmp_path: Path) -> None:
    path = _save(tmp_path)
    again = _save(tmp_path / "again")
    assert again.name == path.name  # the version is a content hash: same models, same version
    assert (tmp_path / "current").read_text().strip() == path.name
    loaded = artifacts.load_eta_model(tmp_path)  # through current
    assert loaded.path == path and loaded.version == path.name
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["features"] == list(FEATURES) and manifest["data"]["seed"] == 9
    assert manifest["sklearn_version"] and manifest["targets"]["late"]
    _, test = split()
    assert np.array_equal(training.predict(loaded.models, test.X, test.baseline_s)[0],
                          training.predict(small_models(), test.X, test.baseline_s)[0])
    with pytest.raises(artifacts.ArtifactError, match="no artifact"):
        artifacts.set_current(tmp_path, "nope")


def test_load_refuses_other_features_other_sklearn_and_untrusted_types(tmp_path: Path) -> None:
    path = _save(tmp_path)
    with pytest.raises(artifacts.ArtifactError, match=r"does not match the code's \['road_m'\]") as exc:
        artifacts.load_eta_model(path, expected_features=("road_m",))
    assert "since_dispatch_s" in str(exc.value)  # names both lists
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "sklearn_version": "0.1"}))
    with pytest.raises(artifacts.ArtifactError, match=r"scikit-learn 0\.1"):
        artifacts.load_eta_model(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    sio.dump({"risk": small_models().risk, "fn": Path}, path / "risk.skops")  # a type outside the allow-list
    with pytest.raises(artifacts.ArtifactError, match="allow-list"):
        artifacts.load_eta_model(path)
    with pytest.raises(artifacts.ArtifactError, match="neither"):
        artifacts.load_eta_model(tmp_path / "empty")


def _van(at: int = AT, **extra: float) -> VanSnapshot:
    return VanSnapshot("DRV-001", 39.90, 116.40, at, 5.0, load_kg=90.0, traffic_index=1.5, rain_mm_h=0.0,
                       driver_pace=1.1, stops_total=4, **extra)  # type: ignore[arg-type]


STOPS = [Stop(f"O{i}", 39.90 + 0.012 * i, 116.40 + 0.008 * (i % 3), window_start=AT, window_end=AT + 3_600_000,
              kg=20.0, dispatched_at=AT - 900_000) for i in (3, 1, 2, 4)]


def test_learnt_eta_keeps_the_estimator_protocol() -> None:
    est = LearntEta(small_models(), "hgb/test")
    assert est.road_factor == 1.35 and est.name == "hgb/test"
    assert est.estimate(_van(), []) == []
    for at in (AT, AT + 9 * 3_600_000):
        etas = est.estimate(_van(at), STOPS)
        assert [e.order_id for e in etas] == [s.order_id for s in STOPS]
        assert [e.stops_before for e in etas] == [0, 1, 2, 3]
        assert all(e.eta >= at for e in etas)
        assert all(a.eta <= b.eta for a, b in itertools.pairwise(etas))
        assert all(e.late_risk is not None and 0.0 <= e.late_risk <= 1.0 for e in etas)
        assert est.estimate(_van(at), STOPS) == etas  # same input, same output
    late = est.estimate(_van(), [Stop("X", 39.99, 116.50, window_end=AT - 600_000, dispatched_at=AT - 7_200_000)])
    soon = est.estimate(_van(), [Stop("X", 39.99, 116.50, window_end=AT + 4 * 3_600_000, dispatched_at=AT)])
    assert late[0].late_risk > soon[0].late_risk  # a window already over is riskier than one four hours away


def test_learnt_eta_from_artifact_is_named_by_version(tmp_path: Path) -> None:
    path = _save(tmp_path)
    est = load_estimator(tmp_path)
    assert est.name == f"hgb/{path.name}"
    assert est.estimate(_van(), STOPS) == LearntEta(small_models(), est.name).estimate(_van(), STOPS)
    with pytest.raises(ValueError, match="features"):
        LearntEta(training.Models(small_models().risk, small_models().eta, ("road_m",)))


def test_flat_forest_predicts_exactly_like_scikit_learn() -> None:
    from models.fast_forest import FastModel

    _, test = split()
    X = test.X.copy()
    X[::5, FEATURES.index("speed_kmh")] = np.nan  # missing values take the trees' learnt side
    m = small_models()
    assert np.array_equal(FastModel(m.risk).predict_late(X), m.risk.predict_proba(X)[:, 1])
    assert np.array_equal(FastModel(m.eta).predict(X), m.eta.predict(X))
    for model in (m.risk, m.eta):  # the compiled walk and the numpy fallback: the same sums, to the bit
        forest = FastModel(model).forest
        assert np.array_equal(forest.raw(X), forest.raw_numpy(X))
    est = LearntEta(m)
    assert est.fast is not None
    slow = LearntEta(m)
    slow.fast = None  # scikit-learn's predict: the same estimates
    assert slow.estimate(_van(), STOPS) == est.estimate(_van(), STOPS)
    with pytest.raises(ValueError, match="shape"):
        FastModel(m.eta).predict(X[:, :3])
