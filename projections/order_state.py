"""The order-state fold: ``fold(state, event_type, event) -> FoldResult``.

Events of one order carry a gap-free ``version`` (1, 2, 3, ...). The fold is a
resequencer in front of the state machine, which makes it idempotent and
insensitive to delivery order:

* version already applied, same event id  -> duplicate, state unchanged;
* version already applied, other event id -> VERSION_CONFLICT rejection;
* next version                            -> applied, then any buffered
  successors are applied in order;
* a later version                          -> buffered in ``pending`` until the
  gap closes (bounded by MAX_PENDING; beyond it: VERSION_GAP rejection).

An event the state machine refuses (or whose data is impossible) consumes its
version, is counted in ``rejected_events`` and returned as a ``Rejection`` for
the shell to dead-letter; the order's later events still apply. Since events
are always applied in version order, any duplication or reordering of the same
events yields the same state.

State is a JSON-safe dict, treated as immutable: every call returns a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from projections.order_events import InvalidEvent, apply_event, validate
from projections.order_status import TRANSITIONS, IllegalTransition, OrderStatus, next_status
from projections.timefmt import jsonable

MAX_PENDING = 256
_STATUS = {s.value: s for s in OrderStatus}  # a dict lookup instead of an Enum call per event

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    order_id: str
    event_id: str
    event_type: str
    version: int
    reason_code: str  # ILLEGAL_TRANSITION, INVALID_EVENT, VERSION_CONFLICT, VERSION_GAP
    reason: str


@dataclass(frozen=True, slots=True)
class FoldResult:
    state: State
    applied: int = 0  # events applied (including drained successors)
    duplicate: bool = False
    buffered: bool = False
    rejections: tuple[Rejection, ...] = field(default_factory=tuple)
    views: tuple[dict[str, Any], ...] = ()  # with ``trace=True``: the view after each applied version, in order

    @property
    def changed(self) -> bool:
        return self.applied > 0 or self.buffered or bool(self.rejections)


def new_state(order_id: str) -> State:
    return {"order_id": order_id, "applied": 0, "event_ids": [], "pending": {}, "rejected": 0, "view": None}


def fold(state: State | None, event_type: str, event: Mapping[str, Any], trace: bool = False) -> FoldResult:
    order_id = event["order_id"]
    if state is None:
        state = new_state(order_id)
    version = event["version"]
    event_id = event["event_id"]
    if state["order_id"] != order_id:
        return _reject_only(state, event_type, event, "INVALID_EVENT",
                            f"event for order {order_id} folded into order {state['order_id']}")
    if event_type not in TRANSITIONS:
        return _reject_only(state, event_type, event, "INVALID_EVENT", f"{event_type} is not an order event")
    if type(version) is not int or not 1 <= version < 2**31:
        return _reject_only(state, event_type, event, "INVALID_EVENT", f"version {version!r} must be in 1..2^31-1")

    applied = state["applied"]
    if version <= applied:
        if state["event_ids"][version - 1] == event_id:
            return FoldResult(state, duplicate=True)
        return _reject_only(state, event_type, event, "VERSION_CONFLICT",
                            f"version {version} was already taken by event {state['event_ids'][version - 1]}")
    key = str(version)
    if version > applied + 1:
        held = state["pending"].get(key)
        if held is not None:
            if held["event"]["event_id"] == event_id:
                return FoldResult(state, duplicate=True)
            return _reject_only(state, event_type, event, "VERSION_CONFLICT",
                                f"version {version} is already held for event {held['event']['event_id']}")
        if len(state["pending"]) >= MAX_PENDING:
            return _reject_only(state, event_type, event, "VERSION_GAP",
                                f"{MAX_PENDING} later events wait for version {applied + 1}; giving up on {version}")
        new = dict(state)
        new["pending"] = {**state["pending"], key: {"type": event_type, "event": jsonable(dict(event))}}
        return FoldResult(new, buffered=True)

    new = dict(state)
    new["event_ids"] = list(state["event_ids"])
    new["pending"] = dict(state["pending"])
    rejections: list[Rejection] = []
    views: list[dict[str, Any]] = []
    count = 0
    current_type, current = event_type, event
    while True:
        rejection = _apply_in_order(new, current_type, current)
        if rejection:
            rejections.append(rejection)
        else:
            count += 1
            if trace:
                views.append(new["view"])
        nxt = new["pending"].pop(str(new["applied"] + 1), None)
        if nxt is None:
            break
        current_type, current = nxt["type"], nxt["event"]
    return FoldResult(new, applied=count, rejections=tuple(rejections), views=tuple(views))


def _apply_in_order(state: State, event_type: str, event: Mapping[str, Any]) -> Rejection | None:
    """Apply the next version to ``state`` (a private copy); mutates it."""
    view = state["view"]
    state["applied"] = event["version"]
    state["event_ids"].append(event["event_id"])
    status = _STATUS[view["status"]] if view else None
    try:
        validate(event_type, event, view)
        stages = view["stages"] if view else {}
        target = next_status(event["order_id"], status, stages, event_type, event)
        new_view = apply_event(view, event_type, event, target.value, TRANSITIONS[event_type].stage)
    except (IllegalTransition, InvalidEvent) as exc:
        return _count_rejection(state, view, _rejection(event_type, event, exc.reason_code, str(exc)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # incl. an unknown status in the view
        # Malformed data (missing or mistyped field) that bypassed the schema: reject it
        # like any impossible event, so a bad record can never block its order.
        reason = f"order {event.get('order_id')}: malformed {event_type}: {type(exc).__name__}: {exc}"
        return _count_rejection(state, view, _rejection(event_type, event, "INVALID_EVENT", reason))
    new_view["rejected_events"] = state["rejected"]
    state["view"] = new_view
    return None


def _count_rejection(state: State, view: dict[str, Any] | None, rejection: Rejection) -> Rejection:
    state["rejected"] += 1
    if view is not None:
        state["view"] = {**view, "rejected_events": state["rejected"]}
    return rejection


def _rejection(event_type: str, event: Mapping[str, Any], code: str, reason: str) -> Rejection:
    return Rejection(str(event.get("order_id")), str(event.get("event_id")), event_type,
                     event.get("version", 0), code, reason)


def _reject_only(state: State, event_type: str, event: Mapping[str, Any], code: str, reason: str) -> FoldResult:
    """A rejection that does not consume a version (the event never had a valid slot)."""
    oid = event.get("order_id")
    return FoldResult(state, rejections=(_rejection(event_type, event, code, f"order {oid}: {reason}"),))


def fold_all(events: list[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, State], list[Rejection]]:
    """Fold a whole log (any orders, any order). Used by replay and tests."""
    states: dict[str, State] = {}
    rejections: list[Rejection] = []
    for event_type, event in events:
        oid = event["order_id"]
        result = fold(states.get(oid), event_type, event)
        states[oid] = result.state
        rejections.extend(result.rejections)
    return states, rejections
