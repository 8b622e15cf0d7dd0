"""The order state machine shared by the command side and every stream fold.

Each event type names the statuses it may follow and the status it leads to.
Guards that are not statuses (stock checked, packed) are stages already
reached. ``next_status`` is the one decision; the ``Order`` aggregate calls it
before recording an event and the order-state fold calls it before applying
one, so the two can never disagree about what is legal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    CREATED = "CREATED"
    PAID = "PAID"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PICKING = "PICKING"
    DELIVERING = "DELIVERING"
    SIGNED = "SIGNED"
    EXCEPTION_HANDLING = "EXCEPTION_HANDLING"
    RETURNING = "RETURNING"
    RETURNED = "RETURNED"
    CLAIMING = "CLAIMING"
    CLAIM_SETTLED = "CLAIM_SETTLED"
    CANCELLED = "CANCELLED"


S = OrderStatus
# No event leaves these. OUT_OF_STOCK is not terminal: the order can still be cancelled.
TERMINAL = frozenset({S.RETURNED, S.CLAIM_SETTLED, S.CANCELLED})


class IllegalTransition(Exception):
    """An event/command that the order's current state does not allow."""

    reason_code = "ILLEGAL_TRANSITION"

    def __init__(self, order_id: str, status: OrderStatus | None, event_type: str, why: str) -> None:
        state = status.value if status else "NEW (no OrderCreated yet)"
        super().__init__(f"order {order_id}: {event_type} is not allowed in state {state}: {why}")
        self.order_id = order_id
        self.status = status
        self.event_type = event_type


def _all_lines_short(event: Mapping[str, Any]) -> bool:
    lines = event.get("lines") or []
    return bool(lines) and all(line["status"] == "SHORT" and line["available"] <= 0 for line in lines)


def _stock_outcome(event: Mapping[str, Any]) -> OrderStatus:
    return S.OUT_OF_STOCK if _all_lines_short(event) else S.PAID


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[OrderStatus | None]
    target: OrderStatus | Callable[[Mapping[str, Any]], OrderStatus] | None  # None: status unchanged
    requires: frozenset[str] = frozenset()  # stages that must have been reached
    forbids: frozenset[str] = frozenset()  # stages that must not have been reached
    stage: str = ""  # stage name recorded when applied


def _t(sources, target, stage, requires=(), forbids=()) -> Transition:  # type: ignore[no-untyped-def]
    return Transition(frozenset(sources), target, frozenset(requires), frozenset(forbids), stage)


TRANSITIONS: dict[str, Transition] = {
    "OrderCreated": _t([None], S.CREATED, "created"),
    "PaymentConfirmed": _t([S.CREATED], S.PAID, "paid"),
    "StockChecked": _t([S.PAID], _stock_outcome, "stock_checked", forbids=["stock_checked"]),
    "PickingStarted": _t([S.PAID], S.PICKING, "picking_started", requires=["stock_checked"]),
    "LineWeighed": _t([S.PICKING], None, "weighed", forbids=["packed"]),
    "OrderPacked": _t([S.PICKING], None, "packed", forbids=["packed"]),
    # First dispatch needs a packed order; a re-dispatch follows an exception.
    "OrderDispatched": _t([S.PICKING, S.EXCEPTION_HANDLING], S.DELIVERING, "dispatched", requires=["packed"]),
    "ExceptionReported": _t([S.DELIVERING], S.EXCEPTION_HANDLING, "exception_reported"),
    "OrderDelivered": _t([S.DELIVERING], S.SIGNED, "delivered"),
    "DeliveryRefused": _t([S.DELIVERING, S.EXCEPTION_HANDLING], S.RETURNING, "refused"),
    "ReturnStarted": _t([S.SIGNED], S.RETURNING, "return_started"),
    "ReturnCompleted": _t([S.RETURNING], S.RETURNED, "returned"),
    "DamageClaimOpened": _t([S.EXCEPTION_HANDLING, S.SIGNED], S.CLAIMING, "claim_opened"),
    "DamageClaimSettled": _t([S.CLAIMING], S.CLAIM_SETTLED, "claim_settled"),
    "OrderCancelled": _t([S.CREATED, S.PAID, S.OUT_OF_STOCK, S.PICKING], S.CANCELLED, "cancelled"),
}

ORDER_EVENT_TYPES = frozenset(TRANSITIONS)

# Command verb (Order aggregate method) -> the order event it records.
COMMAND_EVENTS: dict[str, str] = {
    "create": "OrderCreated",
    "confirm_payment": "PaymentConfirmed",
    "check_stock": "StockChecked",
    "start_picking": "PickingStarted",
    "weigh_line": "LineWeighed",
    "pack": "OrderPacked",
    "dispatch": "OrderDispatched",
    "report_exception": "ExceptionReported",
    "deliver": "OrderDelivered",
    "refuse": "DeliveryRefused",
    "start_return": "ReturnStarted",
    "complete_return": "ReturnCompleted",
    "open_claim": "DamageClaimOpened",
    "settle_claim": "DamageClaimSettled",
    "cancel": "OrderCancelled",
}


def next_status(
    order_id: str,
    status: OrderStatus | None,
    stages: Mapping[str, Any],
    event_type: str,
    event: Mapping[str, Any],
) -> OrderStatus:
    """The status after ``event_type``; raises IllegalTransition when not allowed.

    ``stages`` is the set (or mapping) of stage names already reached.
    """
    transition = TRANSITIONS.get(event_type)
    if transition is None:
        raise IllegalTransition(order_id, status, event_type, "not an order event type")
    if status not in transition.sources:
        allowed = ", ".join(sorted(s.value if s else "NEW" for s in transition.sources))
        raise IllegalTransition(order_id, status, event_type, f"allowed only from {allowed}")
    missing = [stage for stage in transition.requires if stage not in stages]
    if missing:
        raise IllegalTransition(order_id, status, event_type, f"requires {', '.join(sorted(missing))} first")
    done = [stage for stage in transition.forbids if stage in stages]
    if done:
        raise IllegalTransition(order_id, status, event_type, f"{', '.join(sorted(done))} already happened")
    target = transition.target
    if target is None:
        assert status is not None
        return status
    if callable(target) and not isinstance(target, OrderStatus):
        return target(event)
    return target
