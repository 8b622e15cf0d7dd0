"""Alert records: one id per rule and subject, opened and resolved in event time. Pure.

A rule decision is an ``AlertChange`` (open or resolve, with its evidence); ``AlertBook``
keeps the alerts of one key (a driver, a vehicle, an order) and turns changes into the
``kuailv.alerts.Alert`` records published on the compacted alert topic. It enforces the
contract: an alert opens once per rule and subject, a repeated open while open only
updates nothing, a resolve of a closed alert is ignored, and a re-open after a resolve
keeps the id and counts ``occurrences``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = ("OPERATOR", "CUSTOMER_SERVICE", "MERCHANT", "WAREHOUSE", "DRIVER", "CUSTOMER")
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
SUBJECT_FIELDS = ("order_id", "driver_id", "vehicle_id", "warehouse_id", "customer_id")


@dataclass(frozen=True, slots=True)
class AlertChange:
    """A rule's decision about one subject at event time ``at``."""

    rule_id: str
    rule_version: int
    opening: bool  # True: the condition holds; False: it cleared
    at: int  # event time (epoch ms) the condition started or cleared
    subject_kind: str  # "order", "driver", "vehicle", "warehouse"
    subject_id: str
    severity: str = "WARNING"
    message: str = ""
    subject: Mapping[str, str | None] = field(default_factory=dict)  # order_id, driver_id, ... as known
    evidence: Mapping[str, str] = field(default_factory=dict)
    location: tuple[float, float] | None = None
    audience: Sequence[str] = ("OPERATOR",)

    @property
    def alert_id(self) -> str:
        return alert_id(self.rule_id, self.subject_kind, self.subject_id)


def alert_id(rule_id: str, subject_kind: str, subject_id: str) -> str:
    return f"{rule_id}/{subject_kind}/{subject_id}"


def new_alert(change: AlertChange) -> dict[str, Any]:
    record: dict[str, Any] = {name: change.subject.get(name) for name in SUBJECT_FIELDS}
    record.update({
        "alert_id": change.alert_id, "rule_id": change.rule_id, "rule_version": change.rule_version,
        "severity": change.severity, "status": "OPEN", "opened_at": change.at, "updated_at": change.at,
        "resolved_at": None, "occurrences": 1, "message": change.message, "evidence": dict(change.evidence),
        "location": {"lat": change.location[0], "lng": change.location[1]} if change.location else None,
        "audience": list(change.audience),
    })
    return record


def apply_change(current: Mapping[str, Any] | None, change: AlertChange) -> dict[str, Any] | None:
    """The alert after ``change``, or None when the change does not move it (already open,
    already resolved, or a resolve of an alert that never opened)."""
    if change.opening:
        if current is None:
            return new_alert(change)
        if current["status"] == "OPEN":
            return None
        reopened = new_alert(change)
        reopened["occurrences"] = current["occurrences"] + 1
        return reopened
    if current is None or current["status"] != "OPEN":
        return None
    resolved = dict(current)
    resolved["status"] = "RESOLVED"
    resolved["resolved_at"] = max(change.at, current["opened_at"])
    resolved["updated_at"] = resolved["resolved_at"]
    resolved["evidence"] = {**current["evidence"], **change.evidence}
    return resolved


def apply_changes(book: dict[str, dict[str, Any]], changes: Iterable[AlertChange]) -> list[dict[str, Any]]:
    """Apply ``changes`` in order to ``book`` (alert id -> alert, mutated) and return every
    record to publish, in order: an alert that opens and resolves in one step yields both, so
    what is published does not depend on how an engine batches its input."""
    published: list[dict[str, Any]] = []
    for change in changes:
        after = apply_change(book.get(change.alert_id), change)
        if after is not None:
            book[change.alert_id] = after
            published.append(after)
    return published
