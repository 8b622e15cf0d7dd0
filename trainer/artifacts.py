"""Versioned model artifacts on disk: ``<root>/<version>/{risk,eta}.skops`` + ``manifest.json``, and ``<root>/current``.

Outside the pure ``models`` package because it does I/O, and only at the paths it is given. Models are written with
``skops.io`` (no pickle: loading runs no code) and loaded with an allow-list of types. The version is a
content hash of both model files and the manifest, so the same training gives the same version. The
manifest records the model name, scikit-learn version, feature list, metrics, the event-time range and
size of the training data, the simulation seed and days, and the target definitions.

``load_eta_model`` refuses, with an ``ArtifactError`` that says why, an artifact whose feature list differs
from the code's, that was written by another scikit-learn version, or that holds types outside the allow-list.
``set_current`` points ``<root>/current`` (a one-line text file, replaced atomically) at a version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sklearn
import skops.io as sio

from models.features import FEATURES
from models.training import Models

MODEL_NAME = "hgb"
_ADDRESS = rb"\d{12,}"  # a CPython object address (id()), as skops writes it into its file
FILES = {"risk": "risk.skops", "eta": "eta.skops"}
MANIFEST = "manifest.json"
TRAVEL_TIMES_FILE = "travel_times.json"  # the stop order's travel times, beside the models (config.eta_model)
CURRENT = "current"
# Types the skops files may hold beyond skops' own defaults (the trees of a fitted HistGradientBoosting model).
TRUSTED_TYPES = frozenset({"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})
TARGET_DEFINITIONS = {
    "late": "door time > the order's delivery window end; door time = OrderDelivered / DeliveryRefused / door "
            "ExceptionReported of the dispatch in force at the prediction point",
    "remaining_s": "door time - prediction time (the van's fix time), seconds",
    "prediction_point": "every estimate of the per-driver fold (projections.van_eta, every 30 s of event time), "
                        "sampled once per driver per 5 minutes",
}


class ArtifactError(Exception):
    """An artifact that cannot be loaded safely or does not fit this code."""


@dataclass(frozen=True, slots=True)
class LoadedModels:
    models: Models
    manifest: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def save(root: Path, models: Models, info: dict[str, Any], *, unhashed: dict[str, Any] | None = None,
         extra_files: dict[str, bytes] | None = None, make_current: bool = True) -> Path:
    """Write ``models`` with a manifest (``info`` merged in: metrics, data range, seed, days, row counts) under
    ``root/<version>``; returns that directory. The same models and info give the same version; ``unhashed``
    (e.g. timings) is recorded in the manifest but not part of the version; ``extra_files`` (name -> bytes, e.g.
    ``travel_times.json``) are written beside the models and are part of the version."""
    blobs = {}
    for key, name in FILES.items():
        buf = io.BytesIO()
        sio.dump(getattr(models, key), buf)
        blobs[name] = buf.getvalue()
    manifest = {"name": MODEL_NAME, "sklearn_version": sklearn.__version__, "features": list(models.features),
                "files": dict(FILES), "targets": TARGET_DEFINITIONS, **info}
    body = json.dumps(manifest, sort_keys=True, default=_json_default).encode()
    digest = hashlib.sha256(body)
    for name in sorted(blobs):
        digest.update(_content_digest(blobs[name]))
    for name, blob in sorted((extra_files or {}).items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(blob).digest())
    version = digest.hexdigest()[:12]
    manifest["version"] = version
    manifest.update(unhashed or {})
    target = Path(root) / version
    target.mkdir(parents=True, exist_ok=True)
    for name, blob in {**blobs, **(extra_files or {})}.items():
        (target / name).write_bytes(blob)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json_default) + "\n")
    if make_current:
        set_current(Path(root), version)
    return target


def _content_digest(blob: bytes) -> bytes:
    """A digest of a skops file's content that does not change between dumps of the same model: the zip's
    timestamps are left out, and object addresses (skops names memo entries and array files after ``id()``)
    are renumbered by first use in ``schema.json``, in the schema and in the member names alike."""
    digest = hashlib.sha256()
    ids: dict[bytes, bytes] = {}

    def number(m: re.Match[bytes]) -> bytes:
        return ids.setdefault(m.group(0), b"#" + str(len(ids)).encode())

    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        schema = re.sub(_ADDRESS, number, z.read("schema.json"))
        digest.update(hashlib.sha256(schema).digest())
        members = {re.sub(_ADDRESS, number, name.encode()): name for name in z.namelist() if name != "schema.json"}
        for canonical in sorted(members):
            digest.update(canonical + b"\0" + hashlib.sha256(z.read(members[canonical])).digest())
    return digest.digest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"manifest: {type(value).__name__} is not JSON-able")


def set_current(root: Path, version: str) -> None:
    """Point ``root/current`` at ``root/<version>`` (which must hold a manifest)."""
    if not (root / version / MANIFEST).is_file():
        raise ArtifactError(f"no artifact {version!r} under {root} (missing {MANIFEST})")
    tmp = root / f".{CURRENT}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / CURRENT)


def resolve(path: Path) -> Path:
    """An artifact directory: ``path`` itself when it holds a manifest, else the version ``path/current`` names."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    marker = path / CURRENT
    if not marker.is_file():
        raise ArtifactError(f"{path} is neither a model artifact (no {MANIFEST}) nor a model root (no {CURRENT})")
    version = marker.read_text().strip()
    if not (path / version / MANIFEST).is_file():
        raise ArtifactError(f"{marker} names version {version!r}, which has no {MANIFEST}")
    return path / version


def load_eta_model(path: Path, expected_features: tuple[str, ...] = FEATURES) -> LoadedModels:
    """The models of the artifact at ``path`` (a version directory or a root with ``current``), checked."""
    directory = resolve(path)
    manifest = json.loads((directory / MANIFEST).read_text())
    features = tuple(manifest.get("features") or ())
    if features != tuple(expected_features):
        raise ArtifactError(f"model {directory}: its feature list {list(features)} does not match the code's "
                            f"{list(expected_features)}; retrain with `kuailv train`")
    if manifest.get("sklearn_version") != sklearn.__version__:
        raise ArtifactError(f"model {directory} was written by scikit-learn {manifest.get('sklearn_version')}, "
                            f"this is {sklearn.__version__}; retrain with `kuailv train`")
    loaded = {}
    for key, name in FILES.items():
        blob = (directory / name).read_bytes()
        untrusted = set(sio.get_untrusted_types(data=blob)) - TRUSTED_TYPES
        if untrusted:
            raise ArtifactError(f"model {directory / name} holds types outside the allow-list: {sorted(untrusted)}")
        loaded[key] = sio.loads(blob, trusted=sorted(TRUSTED_TYPES))
    return LoadedModels(Models(loaded["risk"], loaded["eta"], features), manifest, directory)


def load_estimator(path: Path) -> Any:
    """A ``models.learnt_eta.LearntEta`` from the artifact at ``path`` (a version directory or a root with
    ``current``), checked as ``load_eta_model`` checks it; its ``name`` is ``<model name>/<version>``."""
    from models.learnt_eta import LearntEta

    loaded = load_eta_model(path)
    return LearntEta(loaded.models, f"{loaded.manifest['name']}/{loaded.version}")
