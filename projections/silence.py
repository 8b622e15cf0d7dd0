"""The gps-silent rule for one driver: event-time decisions, pure.

The engine keeps the driver's last ping time and one timer at ``silence_due(last_ping_at)``,
moved on every newer ping. When the timer fires, ``silence_fired`` opens the alert (at the due
time: the moment the silence reached the limit) if orders are on board and the timer is still the
current one; a timer older than the due time of the last ping is stale and decides nothing. A
newer ping resolves at its event time (``ping_resumed``); so does the last order leaving the van
(``unloaded``). Resolves of an alert that is not open are ignored by ``projections.alerts``, so
these helpers need not know whether it is.

Subject: kind ``driver``, id the driver id. Evidence: last_ping_at, due_at (epoch ms), silent_min,
orders ("KL1,KL2"), order_count; on resolve cleared_at and cleared_by (``ping`` or ``unloaded``).
"""

from __future__ import annotations

from collections.abc import Sequence

from projections.alert_rules import GpsSilent, Rule, RuleSet, minutes_ms
from projections.alerts import AlertChange


def _rule(rules: RuleSet) -> Rule | None:
    return rules.by_kind("gps-silent")


def silence_due(last_ping_at: int, rules: RuleSet) -> int | None:
    """When the silence after ``last_ping_at`` reaches the limit; None without a gps-silent rule."""
    rule = _rule(rules)
    if rule is None:
        return None
    assert isinstance(rule.params, GpsSilent)
    return last_ping_at + minutes_ms(rule.params.silence_min)


def _subject(driver_id: str, vehicle_id: str | None) -> dict[str, str | None]:
    return {"driver_id": driver_id, "vehicle_id": vehicle_id}


def silence_fired(driver_id: str, last_ping_at: int, timer_at: int, on_board: Sequence[str], rules: RuleSet, *,
                  vehicle_id: str | None = None,
                  last_location: tuple[float, float] | None = None) -> AlertChange | None:
    """The open when the timer at ``timer_at`` fires for a driver silent since ``last_ping_at``, or None
    (no rule, a stale timer, nothing on board)."""
    rule = _rule(rules)
    due = silence_due(last_ping_at, rules)
    if rule is None or due is None or timer_at < due or not on_board:
        return None
    orders = sorted(set(on_board))
    evidence = {"last_ping_at": str(last_ping_at), "due_at": str(due),
                "silent_min": f"{(timer_at - last_ping_at) / 60_000:.1f}", "orders": ",".join(orders),
                "order_count": str(len(orders))}
    return rules.change(rule, opening=True, at=due, subject_kind="driver", subject_id=driver_id,
                        subject=_subject(driver_id, vehicle_id), evidence=evidence, location=last_location)


def _resolve(driver_id: str, at: int, rules: RuleSet, vehicle_id: str | None, by: str) -> AlertChange | None:
    rule = _rule(rules)
    if rule is None:
        return None
    return rules.change(rule, opening=False, at=at, subject_kind="driver", subject_id=driver_id,
                        subject=_subject(driver_id, vehicle_id), evidence={"cleared_at": str(at), "cleared_by": by})


def unloaded(driver_id: str, at: int, rules: RuleSet, *, vehicle_id: str | None = None) -> AlertChange | None:
    """The resolve at ``at`` when the last order left the van; None without the rule."""
    return _resolve(driver_id, at, rules, vehicle_id, "unloaded")


def resumed(driver_id: str, ping_at: int, rules: RuleSet, *, vehicle_id: str | None = None) -> AlertChange | None:
    """The resolve at the first ping after a silence (the caller knows it is newer); None without the rule."""
    return _resolve(driver_id, ping_at, rules, vehicle_id, "ping")


def ping_resumed(driver_id: str, last_ping_at: int | None, ping_at: int, rules: RuleSet, *,
                 vehicle_id: str | None = None) -> AlertChange | None:
    """The resolve for a ping at ``ping_at``; None for a ping not newer than ``last_ping_at`` (a duplicate or
    a late one: it neither moves the silence nor ends it) or a driver never seen before."""
    if last_ping_at is None or ping_at <= last_ping_at:
        return None
    return _resolve(driver_id, ping_at, rules, vehicle_id, "ping")
