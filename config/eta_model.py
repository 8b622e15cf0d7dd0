"""Which ETA / delay-risk estimator and which stop order the engines run, from the settings.

``KUAILV_ETA_MODEL``:

* ``auto`` (default): the version ``<state_dir>/models/eta/current`` names (``kuailv train`` writes it;
  ``make run``'s setup trains a quick one when there is none), else the distance-speed baseline;
* ``baseline``: ``projections.eta.DistanceSpeedEta``;
* a directory: a model artifact (``models/artifacts.py``), or a model root whose ``current`` names one.

``KUAILV_ROUTE_PLANNER``: ``auto`` (default: OR-Tools with the travel times learnt with the model,
``travel_times.json`` in its artifact, when there is one), ``nearest`` (nearest neighbour) or a
``travel_times.json`` file.

The worker, the Flink job and ``kuailv replay`` all build their geofence projection through
``streams.projection_builders``, which calls this at start-up (never at import), so every engine runs
the same model. A model whose feature list, or scikit-learn version, is not the code's is refused with
``EtaModelError`` before any record is folded: point the setting at a matching artifact or retrain.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import Settings

log = logging.getLogger(__name__)


class EtaModelError(RuntimeError):
    """The configured model (or travel times) cannot be used: missing, unreadable or not the code's."""


@dataclass(frozen=True, slots=True)
class EtaChoice:
    estimator: Any  # projections.eta.EtaEstimator
    name: str  # recorded in every OrderEta (estimator)
    learnt: bool  # True: the estimator gives late_risk
    artifact: Path | None
    planner: Any  # projections.van_eta.RoutePlanner | None
    planner_name: str


def model_root(settings: Settings) -> Path:
    """Where ``kuailv train`` writes its versions (and ``current``) by default."""
    return settings.state_dir / "models" / "eta"


def artifact_path(settings: Settings) -> Path | None:
    """The artifact directory ``KUAILV_ETA_MODEL`` selects (None: the baseline). Raises ``EtaModelError``."""
    from trainer.artifacts import ArtifactError, resolve

    spec = settings.eta_model.strip()
    if spec == "baseline":
        return None
    if spec == "auto":
        root = model_root(settings)
        try:
            return resolve(root)
        except ArtifactError:
            log.warning("KUAILV_ETA_MODEL=auto: no trained model under %s (run `kuailv train`); using the "
                        "distance-speed baseline", root)
            return None
    try:
        return resolve(Path(spec))
    except ArtifactError as exc:
        raise EtaModelError(f"KUAILV_ETA_MODEL={spec}: {exc}") from exc


def _planner(settings: Settings, artifact: Path | None) -> tuple[Any, str]:
    spec = settings.route_planner.strip()
    if spec == "nearest":
        return None, "nearest"
    if spec == "auto":
        from trainer.artifacts import TRAVEL_TIMES_FILE

        if artifact is None or not (artifact / TRAVEL_TIMES_FILE).is_file():
            return None, "nearest"
        path = artifact / TRAVEL_TIMES_FILE
    else:
        path = Path(spec)
    from projections.routing import plan_stops

    try:
        travel = load_travel_times(path)
    except (OSError, ValueError, KeyError) as exc:
        raise EtaModelError(f"KUAILV_ROUTE_PLANNER={spec}: travel times {path}: {exc}") from exc

    def planner(lat: float, lng: float, at: int, stops: Any) -> list[str]:
        return list(plan_stops((lat, lng), at, stops, travel).order)

    return planner, f"ortools/{path.parent.name if spec == 'auto' else path.name}"


def load_travel_times(path: Path) -> Any:
    """The ``projections.routing.TravelTimes`` in a ``travel_times.json`` (what ``kuailv train`` learns)."""
    from projections.routing import TravelTimes

    return TravelTimes.from_json(json.loads(Path(path).read_text()))


def choose(settings: Settings) -> EtaChoice:
    """Load the configured estimator and planner (I/O: reads the artifact). Raises ``EtaModelError``."""
    from projections.eta import DistanceSpeedEta

    artifact = artifact_path(settings)
    planner, planner_name = _planner(settings, artifact)
    if artifact is None:
        return EtaChoice(DistanceSpeedEta(), "distance-speed/v1", False, None, planner, planner_name)
    from trainer.artifacts import ArtifactError, load_estimator

    try:
        estimator = load_estimator(artifact)
    except (ArtifactError, OSError, ValueError) as exc:
        raise EtaModelError(f"KUAILV_ETA_MODEL={settings.eta_model}: {exc}") from exc
    log.info("ETA model %s from %s; stop order %s", estimator.name, artifact, planner_name)
    return EtaChoice(estimator, estimator.name, True, artifact, planner, planner_name)
