"""Order-keyed rules on real order views: every rule opens and resolves, timers follow the order."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from config.alert_rules import DEFAULT_RULES_PATH, load_rules_file
from projections.alert_rules import EVIDENCE_KEYS, load_rules
from projections.alerts import AlertChange, apply_changes
from projections.order_rules import FINAL, changes, cleared, due_timers, fire, instant_changes
from projections.order_state import fold_all
from projections.order_status import TERMINAL, OrderStatus
from simulator.events import (
    MINUTE,
    T0,
    default_lines,
    line_weighed,
    order_cancelled,
    order_created,
    order_story,
    payment_confirmed,
    picking_started,
    stock_checked,
)

RULES = load_rules_file()
OID = "KL20260601001"
WINDOW_END = T0 + 120 * MINUTE  # order_created's default window is 60..120 min after creation
LATE_DUE = WINDOW_END + 30 * MINUTE
Event = tuple[str, dict[str, Any]]


def views(events: list[Event]) -> list[dict[str, Any]]:
    """The view after each event (fold of each prefix)."""
    out = []
    for n in range(1, len(events) + 1):
        states, rejections = fold_all(events[:n])
        assert rejections == []
        out.append(states[OID]["view"])
    return out


def run(events: list[Event], *, fire_timers: bool = True,
        until: int | None = None) -> tuple[dict[str, dict[str, Any]], list[AlertChange]]:
    """A minimal engine: before each event (and at the end, at ``until``) the watermark reaches the event's
    time and due timers fire (unless ``fire_timers`` is False); then the event's changes apply."""
    book: dict[str, dict[str, Any]] = {}
    decided: list[AlertChange] = []
    before: dict[str, Any] | None = None
    steps: list[tuple[int, dict[str, Any] | None]] = [(e["event_time"], v) for (_, e), v in zip(events, views(events),
                                                                                               strict=True)]
    for watermark, after in [*steps, (steps[-1][0] if until is None else until, None)]:
        if fire_timers and before is not None:
            for rule_id, due in sorted(due_timers(before, RULES).items(), key=lambda item: item[1]):
                opened = fire(before, rule_id, due, RULES) if due <= watermark else None
                if opened is not None:
                    decided.append(opened)
                    apply_changes(book, [opened])
        if after is None:
            break
        step = changes(before, after, RULES, watermark)
        decided += step
        apply_changes(book, step)
        before = after
    return book, decided


def return_started(version: int, at: int) -> Event:
    return "ReturnStarted", {"event_id": f"return-{version}", "order_id": OID, "version": version, "event_time": at,
                             "producer": "driver-app", "reason": "退货", "lines": [{"line_no": 1, "quantity": 1.5}]}


def shifted(events: list[Event], index: int, at: int) -> list[Event]:
    kind, event = events[index]
    return [*events[:index], (kind, {**event, "event_time": at}), *events[index + 1:]]


def test_a_signed_order_on_time_raises_only_the_shortage() -> None:
    story = order_story(OID)
    book, _ = run(story)
    assert set(book) == {f"stock-shortage/order/{OID}"}
    alert = book[f"stock-shortage/order/{OID}"]
    checked, signed = story[2][1]["event_time"], story[-1][1]["event_time"]
    assert (alert["status"], alert["opened_at"], alert["resolved_at"]) == ("RESOLVED", checked, signed)
    assert alert["evidence"]["lines"] == "2" and alert["evidence"]["line.2"] == "MEAT-PORK-BELLY short 1 of 3"
    assert alert["evidence"]["resolved_status"] == "SIGNED"
    assert alert["message"] == f"Order {OID} will ship short: 1 line(s) short at stock check (2)"
    assert due_timers(views(story)[-1], RULES) == {}


def test_late_delivery_opens_at_the_due_time_and_resolves_when_signed() -> None:
    story = order_story(OID)
    signed_at = LATE_DUE + 25 * MINUTE
    story = shifted(story, len(story) - 1, signed_at)
    delivering = views(story)[-2]
    assert due_timers(delivering, RULES) == {"late-delivery": LATE_DUE}
    opened = fire(delivering, "late-delivery", LATE_DUE, RULES)
    assert opened is not None and opened.opening and opened.at == LATE_DUE
    assert opened.subject == {"order_id": OID, "customer_id": "CUST-0001", "warehouse_id": "WH-BJ-CY-01",
                              "driver_id": "DRV-001", "vehicle_id": "VAN-001"}
    assert opened.evidence == {"status": "DELIVERING", "window_start": str(T0 + 60 * MINUTE),
                               "window_end": str(WINDOW_END), "due_at": str(LATE_DUE)}
    assert opened.message == (f"Order {OID} is not signed 30 min after its delivery window ended at "
                              "2026-06-01T08:00:00.000Z (status DELIVERING)")
    assert opened.severity == "CRITICAL" and opened.alert_id == f"late-delivery/order/{OID}"
    book, _ = run(story)
    late = book[f"late-delivery/order/{OID}"]
    assert (late["status"], late["opened_at"], late["resolved_at"]) == ("RESOLVED", LATE_DUE, signed_at)
    assert late["evidence"]["resolved_status"] == "SIGNED"


def test_timers_and_events_racing_give_the_same_alerts() -> None:
    """The signature arrives before the watermark passed the due time: ``cleared`` still records the
    lateness (open at due, resolve at signing), exactly as if the timer had fired first."""
    story = order_story(OID)
    story = shifted(story, len(story) - 1, LATE_DUE + 25 * MINUTE)
    assert run(story, fire_timers=True)[0] == run(story, fire_timers=False)[0]


@pytest.mark.parametrize(("ending", "upto", "state", "entered_index", "limit_min", "next_status"), [
    ("signed", 1, "CREATED", 0, 30, "PAID"),
    ("signed", 3, "PAID", 1, 45, "PICKING"),
    ("signed", 7, "PICKING", 3, 60, "PICKING"),
    ("signed", 8, "PACKED", 7, 150, "DELIVERING"),
    ("redispatched", 10, "EXCEPTION_HANDLING", 9, 60, "DELIVERING"),
])
def test_stuck_opens_per_state_and_resolves_when_the_order_moves_on(
        ending: str, upto: int, state: str, entered_index: int, limit_min: int, next_status: str) -> None:
    story = order_story(OID, ending=ending)
    entered = story[entered_index][1]["event_time"]
    due = entered + limit_min * MINUTE
    moved_at = due + 7 * MINUTE
    story = [*story[:upto], *shifted(story, upto, moved_at)[upto:upto + 1]]
    stuck_view, moved = views(story)[-2:]
    assert due_timers(stuck_view, RULES)["stuck"] == due
    opened = fire(stuck_view, "stuck", due, RULES)
    assert opened is not None and opened.at == due
    assert opened.evidence == {"state": state, "entered_at": str(entered), "limit_min": str(limit_min),
                               "due_at": str(due)}
    assert fire(stuck_view, "stuck", due - 1, RULES) is None  # not the current timer
    assert fire(moved, "stuck", due, RULES) is None  # the order moved on
    resolves = [c for c in cleared(stuck_view, moved, RULES, moved_at) if not c.opening]
    assert [(c.rule_id, c.at, c.evidence["resolved_status"]) for c in resolves] == [("stuck", moved_at, next_status)]
    book, _ = run(story)
    alert = book[f"stuck/order/{OID}"]
    assert (alert["status"], alert["opened_at"], alert["resolved_at"]) == ("RESOLVED", due, moved_at)


def test_a_final_state_before_the_timer_fires_clears_it_without_an_alert() -> None:
    story = order_story(OID, ending="cancelled")
    paid, cancelled = views(story)[-2:]
    due = due_timers(paid, RULES)["stuck"]
    assert story[-1][1]["event_time"] < due
    assert due_timers(cancelled, RULES) == {}
    assert fire(cancelled, "stuck", due, RULES) is None and fire(cancelled, "late-delivery", LATE_DUE, RULES) is None
    decided = changes(paid, cancelled, RULES, story[-1][1]["event_time"])
    assert all(not c.opening for c in decided)  # resolves only; none of these alerts ever opened
    book, _ = run(story)
    assert book == {}


def test_out_of_stock_opens_alone_and_resolves_on_cancel() -> None:
    story = order_story(OID, ending="out_of_stock")
    story.append(order_cancelled(OID, len(story) + 1, T0 + 30 * MINUTE))
    book, _ = run(story)
    assert set(book) == {f"out-of-stock/order/{OID}"}  # no stock-shortage on top of it
    alert = book[f"out-of-stock/order/{OID}"]
    assert (alert["opened_at"], alert["resolved_at"]) == (story[2][1]["event_time"], T0 + 30 * MINUTE)
    assert alert["evidence"]["lines"] == "1,2,3" and alert["severity"] == "CRITICAL"


def _weighed_story(pork_kg: float, spinach_kg: float = 4.9) -> list[Event]:
    lines = default_lines()
    _, created = order_created(OID)
    return [("OrderCreated", created), payment_confirmed(OID, 2, T0 + 5 * MINUTE),
            stock_checked(OID, 3, T0 + 10 * MINUTE, lines), picking_started(OID, 4, T0 + 15 * MINUTE),
            line_weighed(OID, 5, T0 + 20 * MINUTE, lines[0], 5.0, spinach_kg),
            line_weighed(OID, 6, T0 + 25 * MINUTE, lines[1], 3.0, pork_kg)]


@pytest.mark.parametrize(("pork_kg", "deviates"), [(2.92, False), (3.09, False), (2.89, True), (3.1, True)])
def test_meat_tolerance_is_three_percent(pork_kg: float, deviates: bool) -> None:
    after = views(_weighed_story(pork_kg))[-1]
    opened = instant_changes(None, after, RULES, T0)
    assert [c.rule_id for c in opened] == (["weight-deviation"] if deviates else [])


def test_weight_deviation_lists_the_lines_and_resolves_on_reweigh() -> None:
    story = _weighed_story(2.7, spinach_kg=4.5)  # pork -10 % (meat 3 %), spinach -10 % (vegetable 5 %)
    before, after = views(story)[-2:]
    assert [c.rule_id for c in instant_changes(before, after, RULES, T0 + 25 * MINUTE)] == []  # open already
    [opened] = instant_changes(None, after, RULES, T0 + 25 * MINUTE)
    assert opened.evidence == {
        "lines": "1,2", "max_deviation_pct": "10.0",
        "line.1": "sku=VEG-SPINACH-ORG category=VEGETABLE expected_kg=5 measured_kg=4.5 deviation_pct=-10.0 "
                  "tolerance_pct=5",
        "line.2": "sku=MEAT-PORK-BELLY category=MEAT expected_kg=3 measured_kg=2.7 deviation_pct=-10.0 tolerance_pct=3",
    }
    lines = default_lines()
    story += [line_weighed(OID, 7, T0 + 30 * MINUTE, lines[1], 3.0, 3.0),
              line_weighed(OID, 8, T0 + 35 * MINUTE, lines[0], 5.0, 5.0)]
    book, _ = run(story)
    alert = book[f"weight-deviation/order/{OID}"]
    assert (alert["status"], alert["opened_at"], alert["resolved_at"]) == ("RESOLVED", T0 + 20 * MINUTE,
                                                                           T0 + 35 * MINUTE)
    assert alert["evidence"]["lines"] == "1"  # the first weighing opened it


def test_exception_tells_the_customer_and_resolves_on_redispatch() -> None:
    story = order_story(OID, ending="redispatched")
    book, _ = run(story)
    alert = book[f"exception-reported/order/{OID}"]
    reported, redispatched = story[9][1]["event_time"], story[10][1]["event_time"]
    assert (alert["status"], alert["opened_at"], alert["resolved_at"]) == ("RESOLVED", reported, redispatched)
    assert {"CUSTOMER", "CUSTOMER_SERVICE"} <= set(alert["audience"])
    assert alert["location"] == {"lat": 39.93, "lng": 116.45}
    assert alert["evidence"]["reason_code"] == "TRAFFIC_ACCIDENT" and alert["evidence"]["dispatch_count"] == "1"
    assert alert["evidence"]["resolved_status"] == "DELIVERING"
    assert (alert["driver_id"], alert["vehicle_id"]) == ("DRV-001", "VAN-001")


def test_exception_then_refusal_resolves_too() -> None:
    story = order_story(OID, ending="redispatched")[:10]
    story.append(("DeliveryRefused", {**order_story(OID, ending="refused")[-1][1], "version": 11,
                                      "event_id": "refused-11", "event_time": T0 + 70 * MINUTE}))
    alert = run(story)[0][f"exception-reported/order/{OID}"]
    assert (alert["status"], alert["resolved_at"], alert["evidence"]["resolved_status"]) == (
        "RESOLVED", T0 + 70 * MINUTE, "RETURNING")


def test_late_events_after_a_final_state_reopen_nothing() -> None:
    story = order_story(OID)
    story.append(return_started(len(story) + 1, LATE_DUE + 60 * MINUTE))
    signed, returning = views(story)[-2:]
    assert returning["status"] == "RETURNING" and due_timers(returning, RULES) == {}
    assert changes(signed, returning, RULES, LATE_DUE + 60 * MINUTE) == []


def test_the_same_view_twice_decides_nothing() -> None:
    for view in views(order_story(OID, ending="redispatched")):
        assert changes(view, view, RULES, view["updated_at"]) == []


def test_evidence_is_strings_with_documented_keys_and_messages_are_complete() -> None:
    decided: list[AlertChange] = []
    for ending in ("signed", "redispatched", "refused", "cancelled", "out_of_stock"):
        story = order_story(OID, ending=ending)
        story = shifted(story, len(story) - 1, LATE_DUE + 60 * MINUTE)  # late, and stuck where it can be
        decided += run(story)[1]
    decided += run(_weighed_story(2.0))[1]
    assert {c.rule_id for c in decided if c.opening} == {"late-delivery", "stuck", "stock-shortage", "out-of-stock",
                                                          "weight-deviation", "exception-reported"}
    for change in decided:
        assert (change.subject_kind, change.subject_id) == ("order", OID)
        assert all(isinstance(v, str) for v in change.evidence.values())
        documented = set(EVIDENCE_KEYS[change.rule_id])
        assert all(key in documented or re.fullmatch(r"line\.\d+", key) for key in change.evidence), change
        if change.opening:
            assert "?" not in change.message and change.message
        assert change.rule_version == 1


def test_subject_before_dispatch_has_no_driver() -> None:
    [opened] = [c for c in run(order_story(OID))[1] if c.opening]
    assert opened.subject["driver_id"] is None and opened.subject["vehicle_id"] is None
    assert isinstance(opened.subject, Mapping)


def test_timers_need_their_rules() -> None:
    raw = json.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    only_late = load_rules({"version": 1, "rules": [r for r in raw["rules"] if r["id"] == "late-delivery"]})
    view = views(order_story(OID))[0]
    assert due_timers(view, only_late) == {"late-delivery": LATE_DUE}
    assert fire(view, "stuck", T0 + 30 * MINUTE, only_late) is None


def test_final_states_include_the_terminal_ones_and_not_out_of_stock() -> None:
    assert TERMINAL <= FINAL and OrderStatus.SIGNED in FINAL and OrderStatus.OUT_OF_STOCK not in FINAL
    assert set(OrderStatus) >= FINAL
