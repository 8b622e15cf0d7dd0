"""gps-silent: a driver with orders on board and no GPS for ten minutes."""

from __future__ import annotations

from typing import Any

from config.alert_rules import load_rules_file
from projections.alert_rules import load_rules
from projections.alerts import apply_changes
from projections.silence import ping_resumed, silence_due, silence_fired, unloaded
from simulator.events import MINUTE, T0

RULES = load_rules_file()
LAST = T0 + 3 * MINUTE
DUE = LAST + 10 * MINUTE


def test_the_timer_is_due_ten_minutes_after_the_last_ping() -> None:
    assert silence_due(LAST, RULES) == DUE


def test_a_silent_driver_with_orders_on_board_opens_at_the_due_time() -> None:
    opened = silence_fired("DRV-001", LAST, DUE, ["KL2", "KL1", "KL2"], RULES, vehicle_id="VAN-001",
                           last_location=(39.93, 116.45))
    assert opened is not None and opened.opening and opened.at == DUE
    assert (opened.alert_id, opened.subject) == ("gps-silent/driver/DRV-001",
                                                 {"driver_id": "DRV-001", "vehicle_id": "VAN-001"})
    assert opened.evidence == {"last_ping_at": str(LAST), "due_at": str(DUE), "silent_min": "10.0",
                               "orders": "KL1,KL2", "order_count": "2"}
    assert opened.location == (39.93, 116.45)
    assert opened.message == ("Driver DRV-001 has sent no GPS position for 10 min (last at 2026-06-01T06:03:00.000Z) "
                              "with 2 order(s) on board")
    late_timer = silence_fired("DRV-001", LAST, DUE + 5 * MINUTE, ["KL1"], RULES)
    assert late_timer is not None and late_timer.at == DUE and late_timer.evidence["silent_min"] == "15.0"


def test_nothing_on_board_or_a_stale_timer_decides_nothing() -> None:
    assert silence_fired("DRV-001", LAST, DUE, [], RULES) is None
    newer_ping = LAST + 4 * MINUTE  # the timer at DUE was set for the previous ping
    assert silence_fired("DRV-001", newer_ping, DUE, ["KL1"], RULES) is None


def test_a_new_ping_resolves_and_a_duplicate_or_older_one_does_not() -> None:
    resolved = ping_resumed("DRV-001", LAST, DUE + 2 * MINUTE, RULES, vehicle_id="VAN-001")
    assert resolved is not None and not resolved.opening and resolved.at == DUE + 2 * MINUTE
    assert resolved.evidence == {"cleared_at": str(DUE + 2 * MINUTE), "cleared_by": "ping"}
    assert ping_resumed("DRV-001", LAST, LAST, RULES) is None
    assert ping_resumed("DRV-001", LAST, LAST - MINUTE, RULES) is None
    assert ping_resumed("DRV-001", None, LAST, RULES) is None


def test_open_then_resolve_through_the_alert_book() -> None:
    book: dict[str, dict[str, Any]] = {}
    opened = silence_fired("DRV-001", LAST, DUE, ["KL1"], RULES)
    assert opened is not None
    assert [a["status"] for a in apply_changes(book, [opened, opened])] == ["OPEN"]  # a second fire is a no-op
    gone = unloaded("DRV-001", DUE + 30 * MINUTE, RULES)
    assert gone is not None and gone.evidence["cleared_by"] == "unloaded"
    [closed] = apply_changes(book, [gone])
    assert (closed["status"], closed["opened_at"], closed["resolved_at"]) == ("RESOLVED", DUE, DUE + 30 * MINUTE)
    again = ping_resumed("DRV-001", LAST, DUE + 31 * MINUTE, RULES)
    assert again is not None and apply_changes(book, [again]) == []  # resolving a resolved alert: nothing


def test_without_the_rule_there_is_no_timer() -> None:
    rules = load_rules({"version": 1, "rules": []})
    assert silence_due(LAST, rules) is None
    assert silence_fired("DRV-001", LAST, DUE, ["KL1"], rules) is None
    assert ping_resumed("DRV-001", LAST, DUE, rules) is None and unloaded("DRV-001", DUE, rules) is None
