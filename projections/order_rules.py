"""Order-keyed alert rules: pure decisions on the order view (``schemas/avro/projections/order_state.avsc``).

Instant rules (``instant_changes``) compare the view before and after one applied event:
stock-shortage (some lines short, the order not wholly out of stock), out-of-stock (status
OUT_OF_STOCK), weight-deviation (a weighed line off its expected weight by more than its
category's tolerance; one alert per order) and exception-reported (status EXCEPTION_HANDLING).
Each opens at ``at`` (the event time of the event that produced ``after``) when its condition
starts and resolves at ``at`` when it clears: a re-dispatch resolves the exception, a re-weigh
within tolerance the deviation, and a final state resolves every one of them (a shortage stays
open until then). While a condition holds, new evidence (another deviating line) changes nothing:
the open alert keeps the evidence it opened with.

Timer rules (late-delivery, stuck) are event-time timers. ``due_timers(view)`` gives the due
time per rule id: late-delivery at delivery_window_end + grace; stuck at the time the current
stuck state was entered (stage ``created``/``paid``/``picking_started``/``packed``/
``exception_reported``) + that state's limit. The engine keeps one timer per rule id, replaced
whenever the due time changes, and calls ``fire(view, rule_id, due)`` when the watermark passes
``due``; it returns None when the view no longer has that due time (the order moved on).
``cleared(before, after, rules, at)`` is the explicit resolve: for every timer of ``before``
that ``after`` no longer has with the same due time it returns a resolve at ``at``, preceded by
the open at ``due`` when ``due <= at`` (the condition did hold in event time, so the result does
not depend on whether the watermark or the event came first). A resolve of an alert that never
opened is ignored by ``projections.alerts.apply_change``. ``changes`` = ``cleared`` +
``instant_changes``.

Final states (``FINAL``: SIGNED, RETURNING, RETURNED, CLAIMING, CLAIM_SETTLED, CANCELLED: the
delivery is over) have no timers and no instant condition holds in them, so reaching one
resolves everything. Late events: the order fold applies events in version order, so the view
never moves back; events after a final state (a return, a claim) cannot re-open order timers
(``due_timers`` stays empty), while instant rules still see whatever they change in the view.
OUT_OF_STOCK is not final (the order can still be cancelled): its late-delivery timer runs.

Subject: kind ``order``, id the order id; ``subject`` has order_id, customer_id, warehouse_id and
driver_id/vehicle_id of the current dispatch (None before one). Evidence values are strings:

==================  =====================================================================
rule                evidence keys
==================  =====================================================================
late-delivery       status, window_start, window_end, due_at (epoch ms)
stuck               state (CREATED|PAID|PICKING|PACKED|EXCEPTION_HANDLING), entered_at, limit_min,
                    due_at
stock-shortage      lines ("2,3"), short_count, checked_at, line.<no> ("<sku> short <q> of <ordered>")
out-of-stock        lines, checked_at
weight-deviation    lines, max_deviation_pct, line.<no> ("sku=.. category=.. expected_kg=..
                    measured_kg=.. deviation_pct=.. tolerance_pct=..")
exception-reported  reason_code, description, reported_at, dispatch_count
(every resolve)     resolved_status: the order status that cleared it
==================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from projections.alert_rules import LateDelivery, Rule, RuleSet, Stuck, WeightDeviation, minutes_ms
from projections.alerts import AlertChange
from projections.order_status import OrderStatus

View = Mapping[str, Any]
Evidence = dict[str, str]
S = OrderStatus
FINAL: frozenset[str] = frozenset({S.SIGNED, S.RETURNING, S.RETURNED, S.CLAIMING, S.CLAIM_SETTLED, S.CANCELLED})
STUCK_STAGE = {"CREATED": "created", "PAID": "paid", "PICKING": "picking_started", "PACKED": "packed",
               "EXCEPTION_HANDLING": "exception_reported"}


def _num(value: float) -> str:
    return format(round(value, 3), "g")


def subject(view: View) -> dict[str, str | None]:
    driver = view.get("driver") or {}
    return {"order_id": view["order_id"], "customer_id": view.get("customer_id"),
            "warehouse_id": view.get("warehouse_id"), "driver_id": driver.get("driver_id"),
            "vehicle_id": driver.get("vehicle_id")}


def _stage(view: View, name: str) -> str:
    at = (view.get("stages") or {}).get(name)
    return "" if at is None else str(at)


def _stock_shortage(view: View, rule: Rule) -> Evidence | None:
    if view["status"] in FINAL or view["status"] == "OUT_OF_STOCK":
        return None
    short = [line for line in view["lines"] if (line.get("short") or 0) > 0]
    if not short:
        return None
    evidence = {"lines": ",".join(str(line["line_no"]) for line in short), "short_count": str(len(short)),
                "checked_at": _stage(view, "stock_checked")}
    for line in short:
        evidence[f"line.{line['line_no']}"] = f"{line['sku']} short {_num(line['short'])} of {_num(line['ordered'])}"
    return evidence


def _out_of_stock(view: View, rule: Rule) -> Evidence | None:
    if view["status"] != "OUT_OF_STOCK":
        return None
    return {"lines": ",".join(str(line["line_no"]) for line in view["lines"]),
            "checked_at": _stage(view, "stock_checked")}


def _deviation_pct(line: Mapping[str, Any]) -> float | None:
    expected, measured = line.get("expected_kg"), line.get("measured_kg")
    if expected is None or measured is None:
        return None
    if expected <= 0:
        return None if measured <= 0 else float("inf")
    return (measured - expected) / expected * 100.0


def _weight_deviation(view: View, rule: Rule) -> Evidence | None:
    params = rule.params
    assert isinstance(params, WeightDeviation)
    if view["status"] in FINAL:
        return None
    evidence: Evidence = {}
    worst = 0.0
    for line in view["lines"]:
        pct = _deviation_pct(line)
        category = params.category(line)
        tolerance = params.tolerance(category)
        if pct is None or abs(pct) <= tolerance:
            continue
        worst = max(worst, abs(pct))
        evidence[f"line.{line['line_no']}"] = (
            f"sku={line['sku']} category={category or 'UNKNOWN'} expected_kg={_num(line['expected_kg'])} "
            f"measured_kg={_num(line['measured_kg'])} deviation_pct={pct:+.1f} tolerance_pct={_num(tolerance)}")
    if not evidence:
        return None
    return {"lines": ",".join(key.split(".", 1)[1] for key in evidence), "max_deviation_pct": f"{worst:.1f}",
            **evidence}


def _exception(view: View, rule: Rule) -> Evidence | None:
    exc = view.get("exception")
    if view["status"] != "EXCEPTION_HANDLING" or exc is None:
        return None
    return {"reason_code": str(exc["reason_code"]), "description": str(exc["description"]),
            "reported_at": str(exc["at"]), "dispatch_count": str(view.get("dispatch_count", 0))}


INSTANT: dict[str, Callable[[View, Rule], Evidence | None]] = {
    "stock-shortage": _stock_shortage, "out-of-stock": _out_of_stock,
    "weight-deviation": _weight_deviation, "exception-reported": _exception,
}


def _location(view: View) -> tuple[float, float] | None:
    fix = view.get("last_location")
    return (fix["lat"], fix["lng"]) if fix else None


def _change(rules: RuleSet, rule: Rule, view: View, opening: bool, at: int, evidence: Evidence) -> AlertChange:
    return rules.change(rule, opening=opening, at=at, subject_kind="order", subject_id=view["order_id"],
                        subject=subject(view), evidence=evidence, location=_location(view) if opening else None)


def _resolve(rules: RuleSet, rule: Rule, after: View, at: int) -> AlertChange:
    return _change(rules, rule, after, False, at, {"resolved_status": str(after["status"])})


def instant_changes(before: View | None, after: View, rules: RuleSet, at: int) -> list[AlertChange]:
    """Opens and resolves of the instant rules between two successive views (``before`` None: a new order)."""
    out: list[AlertChange] = []
    for kind, condition in INSTANT.items():
        rule = rules.by_kind(kind)
        if rule is None:
            continue
        was = condition(before, rule) if before is not None else None
        now = condition(after, rule)
        if now is not None and was is None:
            out.append(_change(rules, rule, after, True, at, now))
        elif now is None and was is not None:
            out.append(_resolve(rules, rule, after, at))
    return out


def stuck_state(view: View) -> str | None:
    """The state the stuck rule measures: the status, with PICKING split into PICKING and PACKED."""
    status = view["status"]
    if status == "PICKING" and "packed" in (view.get("stages") or {}):
        return "PACKED"
    return status if status in STUCK_STAGE else None


def due_timers(view: View, rules: RuleSet) -> dict[str, int]:
    """Rule id -> due event time (epoch ms) of the timer rules that apply to ``view``; {} in a final state."""
    if view["status"] in FINAL:
        return {}
    due: dict[str, int] = {}
    late = rules.by_kind("late-delivery")
    if late is not None:
        assert isinstance(late.params, LateDelivery)
        due[late.id] = view["delivery_window_end"] + minutes_ms(late.params.grace_min)
    stuck = rules.by_kind("stuck")
    state = stuck_state(view)
    if stuck is not None and state is not None:
        assert isinstance(stuck.params, Stuck)
        limit = stuck.params.limits_min.get(state)
        entered = (view.get("stages") or {}).get(STUCK_STAGE[state])
        if limit is not None and entered is not None:
            due[stuck.id] = entered + minutes_ms(limit)
    return due


def fire(view: View, rule_id: str, due: int, rules: RuleSet) -> AlertChange | None:
    """The open of timer ``rule_id`` at ``due``, or None when ``view`` no longer has that timer."""
    rule = rules.rules.get(rule_id)
    if rule is None or due_timers(view, rules).get(rule_id) != due:
        return None
    if rule.kind == "late-delivery":
        evidence = {"status": str(view["status"]), "window_start": str(view["delivery_window_start"]),
                    "window_end": str(view["delivery_window_end"]), "due_at": str(due)}
    else:
        assert isinstance(rule.params, Stuck)
        state = stuck_state(view) or ""
        evidence = {"state": state, "entered_at": _stage(view, STUCK_STAGE[state]),
                    "limit_min": _num(rule.params.limits_min[state]), "due_at": str(due)}
    return _change(rules, rule, view, True, due, evidence)


def cleared(before: View | None, after: View, rules: RuleSet, at: int) -> list[AlertChange]:
    """Resolves of the timer rules whose due time ``after`` dropped or moved (see the module docstring)."""
    if before is None:
        return []
    now = due_timers(after, rules)
    out: list[AlertChange] = []
    for rule_id, due in due_timers(before, rules).items():
        if now.get(rule_id) == due:
            continue
        if due <= at:
            opened = fire(before, rule_id, due, rules)
            if opened is not None:
                out.append(opened)
        out.append(_resolve(rules, rules.rules[rule_id], after, at))
    return out


def changes(before: View | None, after: View, rules: RuleSet, at: int) -> list[AlertChange]:
    """Everything one applied event decides: timer resolves (``cleared``), then the instant rules."""
    return cleared(before, after, rules, at) + instant_changes(before, after, rules, at)
