"""Stock levels, low-stock alerts and replenishment suggestions per warehouse x SKU. Pure.

Input: ``kuailv.stock.v1``, ``StockMovement`` records keyed by ``warehouse_id/sku`` (the key of the
state too). ``step`` folds one key's movements in arrival order:

* **levels**: ``RECEIPT`` and ``RETURN`` add to the on-hand stock, ``PICK`` takes away, ``COUNT`` (a
  stock take) sets it, ``SHORTAGE`` only records demand that was not there; per Beijing business day
  the picked, short, received and returned quantities. A movement whose ``event_id`` the key has seen
  (the last ``RECENT_IDS``) is a duplicate; re-delivered offsets are skipped before (``skip_applied``).
* **demand history**: daily demand = picks + shortages (what customers asked of this warehouse), the
  last ``history_days`` days. On a key's first movement of a new business day the policy is re-planned
  from the complete days (``models.replenishment.plan_from_history``; none before ``min_history_days``)
  and a ``ReplenishmentSuggestion`` (``DAILY_PLAN``) is emitted.
* **low stock**: when the on-hand stock is below the reorder point the ``low-stock`` alert
  (``low-stock/stock/<warehouse>/<sku>``) opens and a suggestion (``BELOW_REORDER_POINT``) says how
  much to order up to the order-up-to level; the alert resolves when stock is back at or above it.

Everything is decided from the movements and their event times: the same log gives the same outputs
in the worker, ``kuailv replay`` and Flink. Outputs: ``("alert", Alert)``, ``("replenishment",
ReplenishmentSuggestion)`` and, with ``StockContext.levels`` (the worker's InfluxDB series),
``("level", point)`` per movement applied. See ``docs/stock.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from models.replenishment import Plan, PolicyParams, business_day, plan_from_history, round_up
from projections.alert_rules import LowStock, Rule, RuleSet
from projections.alerts import apply_changes
from projections.keyed_batch import Folded, Keyed, decode_as, skip_applied
from projections.order_events import InvalidEvent
from schemas.dead_letters import DeadLetter, SourceRecord

POLICY = "reorder-point/v1"
RECENT_IDS = 512  # event ids kept per key to drop re-published movements
KINDS = ("RECEIPT", "PICK", "SHORTAGE", "RETURN", "COUNT")
Output = tuple[str, dict[str, Any]]
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class StockContext:
    rules: RuleSet | None = None  # the low-stock rule and its policy params; None: levels only
    levels: bool = False  # also emit ("level", point) per movement (the worker's stock_level series)

    @property
    def rule(self) -> Rule | None:
        return None if self.rules is None else self.rules.by_kind("low-stock")

    @property
    def policy(self) -> PolicyParams | None:
        return policy_params(self.rule)


def policy_params(rule: Rule | None) -> PolicyParams | None:
    """The ``low-stock`` rule's params as ``PolicyParams`` (None without the rule)."""
    if rule is None:
        return None
    p = rule.params
    assert isinstance(p, LowStock), rule.id
    return PolicyParams(p.service_level, p.lead_time_days, p.review_days, int(p.history_days), int(p.min_history_days))


def below_reorder_point(on_hand: float, reorder_point: float | None) -> bool:
    """Low stock: on hand below the reorder point (a SKU without a plan yet, no reorder point, is never low)."""
    return reorder_point is not None and on_hand < reorder_point


def stock_key(warehouse_id: str, sku: str) -> str:
    return f"{warehouse_id}/{sku}"


def validate(v: Mapping[str, Any]) -> None:
    """Raises ``InvalidEvent`` for a movement the fold cannot use."""
    if not v["event_id"]:
        raise InvalidEvent("stock movement without an event_id")
    for name in ("warehouse_id", "sku"):
        if not v[name] or "/" in v[name]:
            raise InvalidEvent(f"stock movement {v['event_id']}: {name} {v[name]!r} is empty or has a '/'")
    q = v["quantity"]
    if not (q >= 0 and math.isfinite(q)):
        raise InvalidEvent(f"stock movement {v['event_id']}: quantity {q} is not a finite number >= 0")


def new_state(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"warehouse_id": v["warehouse_id"], "sku": v["sku"], "unit": v["unit"], "on_hand": 0.0, "day": None,
            "first_day": None, "today": _zero_day(), "demand": [], "ids": [], "plan": None, "alerts": {},
            "updated_at": None}


def _zero_day() -> dict[str, float]:
    return {"picked": 0.0, "short": 0.0, "received": 0.0, "returned": 0.0}


def step(state: dict[str, Any] | None, movements: Sequence[Mapping[str, Any]], ctx: StockContext
         ) -> tuple[dict[str, Any] | None, list[Output], int]:
    """Fold ``movements`` (one key's, arrival order); returns (state, outputs, duplicates)."""
    if not movements:
        return state, [], 0
    st = _copy(state) if state is not None else new_state(movements[0])
    out: list[Output] = []
    duplicates = 0
    policy = ctx.policy
    for v in movements:
        if v["event_id"] in st["ids"]:
            duplicates += 1
            continue
        st["ids"] = (st["ids"] + [v["event_id"]])[-RECENT_IDS:]
        at, day = v["event_time"], business_day(v["event_time"])
        rolled = st["day"] is None or day > st["day"]
        if st["day"] is None:
            st["first_day"] = day
        if rolled:
            st["day"], st["today"] = day, _zero_day()
            if policy is not None:
                p = _plan(st, policy)
                st["plan"] = None if p is None else _plan_dict(p)
        _apply(st, v, day, policy)
        st["updated_at"] = at if st["updated_at"] is None else max(st["updated_at"], at)
        out += _decide(st, v, rolled, ctx)
        if ctx.levels:
            out.append(("level", {"warehouse_id": st["warehouse_id"], "sku": st["sku"], "unit": st["unit"],
                                  "on_hand": st["on_hand"], "picked_today": st["today"]["picked"],
                                  "short_today": st["today"]["short"], "event_time": at}))
    return st, out, duplicates


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "today": dict(state["today"]), "demand": [list(d) for d in state["demand"]],
            "alerts": dict(state["alerts"])}


def _apply(st: dict[str, Any], v: Mapping[str, Any], day: int, policy: PolicyParams | None) -> None:
    kind, q = v["kind"], v["quantity"]
    today = st["today"] if day == st["day"] else None  # a late movement of an earlier day: not today's
    if kind == "COUNT":
        st["on_hand"] = q
    elif kind in ("RECEIPT", "RETURN"):
        st["on_hand"] = round(st["on_hand"] + q, 6)
        if today is not None:
            today["received" if kind == "RECEIPT" else "returned"] += q
    elif kind in ("PICK", "SHORTAGE"):
        if kind == "PICK":
            st["on_hand"] = round(st["on_hand"] - q, 6)
        if today is not None:
            today["picked" if kind == "PICK" else "short"] += q
        _add_demand(st, day, q, policy.history_days if policy else 28)


def _add_demand(st: dict[str, Any], day: int, q: float, keep_days: int) -> None:
    demand = st["demand"]
    for entry in demand:
        if entry[0] == day:
            entry[1] = round(entry[1] + q, 6)
            break
    else:
        demand.append([day, q])
        demand.sort(key=lambda e: e[0])
    oldest = st["day"] - keep_days
    st["demand"] = [e for e in demand if e[0] >= oldest]


def _plan(st: Mapping[str, Any], policy: PolicyParams) -> Plan | None:
    """The plan from the complete days before today (zeros where nothing moved since the first day)."""
    today, first = st["day"], st["first_day"]
    start = max(first, today - policy.history_days)
    by_day = {d: q for d, q in st["demand"]}
    return plan_from_history([by_day.get(d, 0.0) for d in range(start, today)], policy)


def _plan_dict(p: Plan) -> dict[str, Any]:
    fc = p.forecast
    return {"forecast_daily": round(fc.mean, 3), "forecast_std": round(fc.std, 3), "history_days": fc.days,
            "lead_time_demand": round(p.lead_time_demand, 3), "safety_stock": round(p.safety_stock, 3),
            "reorder_point": round(p.reorder_point, 3), "order_up_to": round(p.order_up_to, 3)}


def _decide(st: dict[str, Any], v: Mapping[str, Any], rolled: bool, ctx: StockContext) -> list[Output]:
    rule, plan = ctx.rule, st["plan"]
    if rule is None or plan is None or ctx.rules is None:
        return []
    assert ctx.policy is not None
    out: list[Output] = []
    key = stock_key(st["warehouse_id"], st["sku"])
    low = below_reorder_point(st["on_hand"], plan["reorder_point"])
    subject = {"warehouse_id": st["warehouse_id"]}
    at = v["event_time"]
    if low:
        evidence = {"sku": st["sku"], "unit": st["unit"], "on_hand": _num(st["on_hand"]),
                    "reorder_point": _num(plan["reorder_point"]), "safety_stock": _num(plan["safety_stock"]),
                    "forecast_daily": _num(plan["forecast_daily"]), "checked_at": str(at)}
        change = ctx.rules.change(rule, opening=True, at=at, subject_kind="stock", subject_id=key, subject=subject,
                                  evidence=evidence)
    else:
        change = ctx.rules.change(rule, opening=False, at=at, subject_kind="stock", subject_id=key, subject=subject,
                                  evidence={"cleared_at": str(at), "cleared_by": v["kind"],
                                            "cleared_on_hand": _num(st["on_hand"])})
    alerts = apply_changes(st["alerts"], [change])
    opened = any(a["status"] == "OPEN" for a in alerts)
    out += [("alert", a) for a in alerts]
    if opened or rolled:
        out.append(("replenishment", suggestion(st, plan, v, "BELOW_REORDER_POINT" if opened else "DAILY_PLAN",
                                                ctx.policy, ctx.rules.version)))
    return out


def suggestion(st: Mapping[str, Any], plan: Mapping[str, Any], movement: Mapping[str, Any], reason: str,
               policy: PolicyParams, rule_version: int) -> dict[str, Any]:
    """The ``ReplenishmentSuggestion`` of a key's state and plan after ``movement`` (at most one per movement:
    its event id makes the suggestion's)."""
    key, at = stock_key(st["warehouse_id"], st["sku"]), movement["event_time"]
    low = below_reorder_point(st["on_hand"], plan["reorder_point"])
    return {"suggestion_id": f"{key}@{movement['event_id']}", "stock_key": key, "warehouse_id": st["warehouse_id"],
            "sku": st["sku"], "unit": st["unit"], "reason": reason, "decided_at": at, "on_hand": st["on_hand"],
            "forecast_daily": plan["forecast_daily"], "forecast_std": plan["forecast_std"],
            "history_days": plan["history_days"], "service_level": policy.service_level,
            "lead_time_days": float(policy.lead_time_days), "lead_time_demand": plan["lead_time_demand"],
            "safety_stock": plan["safety_stock"], "reorder_point": plan["reorder_point"],
            "order_up_to": plan["order_up_to"],
            "suggested_quantity": round_up(plan["order_up_to"] - st["on_hand"], st["unit"]) if low else 0.0,
            "rule_version": rule_version, "policy": POLICY}


def level_view(st: Mapping[str, Any]) -> dict[str, Any]:
    """A key's stock level as the Redis view shows it (``kuailv:stock:{warehouse_id}`` hash, field = SKU)."""
    day = st["day"]
    plan = st.get("plan")
    return {"warehouse_id": st["warehouse_id"], "sku": st["sku"], "unit": st["unit"], "on_hand": st["on_hand"],
            "day": None if day is None else f"{EPOCH + timedelta(days=day):%Y%m%d}",
            "picked_today": st["today"]["picked"], "short_today": st["today"]["short"],
            "received_today": st["today"]["received"], "returned_today": st["today"]["returned"],
            "reorder_point": None if plan is None else plan["reorder_point"], "updated_at": st["updated_at"]}


def _num(x: float) -> str:
    return format(round(x, 3), "g")


class StockProjection:
    """``projections.keyed_batch`` projection over ``kuailv.stock.v1``: key = ``warehouse_id/sku``."""

    name = "stock"

    def __init__(self, codec: Any, ctx: StockContext) -> None:
        self.codec = codec
        self.ctx = ctx

    def decode(self, rec: SourceRecord) -> Keyed[dict[str, Any]] | DeadLetter:
        decoded = decode_as(self.codec, rec, "StockMovement")
        if type(decoded) is DeadLetter:
            return decoded
        v = decoded.value
        key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        try:
            expected = stock_key(v["warehouse_id"], v["sku"])
            if key != expected:
                raise InvalidEvent(f"message key {key!r} is not warehouse_id/sku {expected!r}")
            validate(v)
        except InvalidEvent as exc:
            return DeadLetter(rec, "INVALID_EVENT", str(exc), v.get("event_id"), decoded.record_type,
                              decoded.schema_id)
        return Keyed(key, v)

    def fold(self, key: str, state: dict[str, Any] | None, items: Sequence[tuple[SourceRecord, Any]]) -> Folded:
        positions, fresh, skipped = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=skipped)
        new, outputs, dup = step(state, [v for _, v in fresh], self.ctx)
        assert new is not None
        new["pos"] = positions
        return Folded(new, changed=True, published=bool(outputs), outputs=outputs, applied=len(fresh) - dup,
                      duplicates=skipped + dup)
