"""Read the versioned alert rules file; validation is ``projections.alert_rules.load_rules`` (pure).

``load_rules_file`` is the only function that touches the file system for the rules.
"""

from __future__ import annotations

import json
from pathlib import Path

from projections.alert_rules import RulesError, RuleSet, load_rules

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "alert_rules.v1.json"


def load_rules_file(path: str | Path = DEFAULT_RULES_PATH) -> RuleSet:
    """The validated rules of ``path``; raises ``RulesError`` naming the file for unreadable or invalid JSON."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise RulesError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return load_rules(raw)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from exc
