"""config.eta_model: which estimator and stop order the engines build, and what they refuse at start-up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from config.eta_model import EtaModelError, choose
from config.settings import load
from projections.eta import DistanceSpeedEta, Stop
from projections.routing import TravelTimes
from tests.unit.models.eta_history import small_models
from trainer import artifacts


def settings(tmp_path: Path, model: str, planner: str = "auto") -> object:
    return dataclasses.replace(load("test"), state_dir=tmp_path, eta_model=model, route_planner=planner)


def saved(root: Path, travel: bool = True) -> Path:
    extra = {"travel_times.json": json.dumps(TravelTimes().to_json()).encode()} if travel else None
    return artifacts.save(root, small_models(), {"metrics": {}, "data": {"seed": 1}}, extra_files=extra)


def test_baseline_and_auto_without_a_model_give_the_distance_speed_estimator(tmp_path: Path) -> None:
    for spec in ("baseline", "auto"):
        c = choose(settings(tmp_path, spec))
        assert isinstance(c.estimator, DistanceSpeedEta) and not c.learnt and c.planner is None
        assert (c.name, c.planner_name) == ("distance-speed/v1", "nearest")


def test_auto_loads_the_current_version_with_its_planner(tmp_path: Path) -> None:
    path = saved(tmp_path / "models" / "eta")
    c = choose(settings(tmp_path, "auto"))
    assert c.learnt and c.artifact == path and c.name == f"hgb/{path.name}"
    assert c.planner_name == f"ortools/{path.name}"
    stops = [Stop("A", 39.95, 116.45), Stop("B", 39.91, 116.41)]
    assert sorted(c.planner(39.90, 116.40, 1_780_000_000_000, stops)) == ["A", "B"]
    assert choose(settings(tmp_path, "auto", planner="nearest")).planner is None


def test_a_pinned_version_that_is_missing_or_does_not_match_the_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EtaModelError, match="KUAILV_ETA_MODEL="):
        choose(settings(tmp_path, str(tmp_path / "nowhere")))
    path = saved(tmp_path / "root")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "features": manifest["features"][:-1]}))
    with pytest.raises(EtaModelError, match="does not match the code's"):
        choose(settings(tmp_path, str(path)))


def test_an_explicit_travel_times_file_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "travel.json"
    bad.write_text(json.dumps({"road_factor": 0.5}))
    with pytest.raises(EtaModelError, match="KUAILV_ROUTE_PLANNER="):
        choose(settings(tmp_path, "baseline", planner=str(bad)))
