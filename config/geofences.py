"""Read the versioned fence file (``KUAILV_FENCES``, default ``config/geofences.v1.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from projections.fences import FenceError, FenceSet, load_fences

DEFAULT_FENCE_FILE = Path(__file__).resolve().parent / "geofences.v1.json"


def fence_file_path() -> Path:
    return Path(os.environ.get("KUAILV_FENCES") or DEFAULT_FENCE_FILE)


def load_fence_file(path: str | Path | None = None) -> FenceSet:
    """The validated fence set; a ``FenceError`` says which file, fence and field is wrong."""
    path = Path(path) if path is not None else fence_file_path()
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FenceError(f"{path}: cannot read the fence file: {exc}") from exc
    try:
        return load_fences(raw)
    except FenceError as exc:
        raise FenceError(f"{path}: {exc}") from exc
