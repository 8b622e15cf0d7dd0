"""Deterministic command fixtures: payloads for every command and paths to every state.

Payloads come from ``simulator.events`` builders (turned into command kwargs by
``avro_mapping.to_command``) plus builders for the four events the simulator
does not build yet. Times are fixed instants: step ``i`` of a path happens at
``T0 + i * 5 min``. Nothing here reads the clock.
"""

from __future__ import annotations

import threading
from typing import Any

from commands.avro_mapping import to_command
from commands.order_service import OrderService
from simulator.events import (
    MINUTE,
    T0,
    default_lines,
    delivery_refused,
    exception_reported,
    line_weighed,
    order_cancelled,
    order_created,
    order_delivered,
    order_dispatched,
    order_packed,
    order_story,
    payment_confirmed,
    picking_started,
    stock_checked,
)

Record = tuple[str, dict[str, Any]]


def _env(order_id: str, at: int, producer: str = "order-service") -> dict[str, Any]:
    return {"event_id": "", "order_id": order_id, "version": 0, "event_time": at, "producer": producer}


def return_started(order_id: str, at: int) -> Record:
    return "ReturnStarted", {**_env(order_id, at, "customer-service"), "reason": "鲜牛奶 临期",
                             "lines": [{"line_no": 3, "quantity": 2.0}]}


def return_completed(order_id: str, at: int) -> Record:
    return "ReturnCompleted", {**_env(order_id, at, "wms"), "warehouse_id": "WH-BJ-CY-01", "restocked": False}


def damage_claim_opened(order_id: str, at: int) -> Record:
    return "DamageClaimOpened", {**_env(order_id, at, "customer-service"), "claim_id": f"CLM-{order_id}",
                                 "description": "五花肉 包装破损", "lines": [{"line_no": 2, "quantity": 1.0}],
                                 "claimed_cents": 3800}


def damage_claim_settled(order_id: str, at: int) -> Record:
    return "DamageClaimSettled", {**_env(order_id, at, "customer-service"), "claim_id": f"CLM-{order_id}",
                                  "settled_cents": 3800, "resolution": "REFUND"}


ALL_SHORT = {ln["line_no"]: 0.0 for ln in default_lines()}

# command -> builder(order_id, at) of the record it should produce (the "happy" payload).
PAYLOADS: dict[str, Any] = {
    "create": lambda oid, at: order_created(oid, 1, at),
    "confirm_payment": lambda oid, at: payment_confirmed(oid, 0, at, 33600),
    "check_stock": lambda oid, at: stock_checked(oid, 0, at, default_lines()),
    "check_stock_partial": lambda oid, at: stock_checked(oid, 0, at, default_lines(), {2: 2.0}),
    "check_stock_all_short": lambda oid, at: stock_checked(oid, 0, at, default_lines(), ALL_SHORT),
    "start_picking": lambda oid, at: picking_started(oid, 0, at),
    "weigh_line": lambda oid, at: line_weighed(oid, 0, at, default_lines()[0]),
    "pack": lambda oid, at: order_packed(oid, 0, at),
    "dispatch": lambda oid, at: order_dispatched(oid, 0, at, eta=at + 40 * MINUTE),
    "redispatch": lambda oid, at: order_dispatched(oid, 0, at, driver_id="DRV-002", eta=at + 30 * MINUTE),
    "report_exception": lambda oid, at: exception_reported(oid, 0, at),
    "deliver": lambda oid, at: order_delivered(oid, 0, at, default_lines()),
    "refuse": lambda oid, at: delivery_refused(oid, 0, at),
    "start_return": return_started,
    "complete_return": return_completed,
    "open_claim": damage_claim_opened,
    "settle_claim": damage_claim_settled,
    "cancel": lambda oid, at: order_cancelled(oid, 0, at),
}

COMMAND_NAMES = ("create", "confirm_payment", "check_stock", "start_picking", "weigh_line", "pack", "dispatch",
                 "report_exception", "deliver", "refuse", "start_return", "complete_return", "open_claim",
                 "settle_claim", "cancel")


def command_for(step: str, order_id: str, at: int) -> tuple[str, dict[str, Any]]:
    """(command, kwargs) for a payload name of ``PAYLOADS`` (variants like ``redispatch`` included)."""
    record_type, record = PAYLOADS[step](order_id, at)
    command, _, kwargs = to_command(record_type, record)
    return command, kwargs


_PAID = ["create", "confirm_payment"]
_PICKING = [*_PAID, "check_stock_partial", "start_picking"]
_PACKED = [*_PICKING, "weigh_line", "pack"]
_DELIVERING = [*_PACKED, "dispatch"]
_SIGNED = [*_DELIVERING, "deliver"]

# Every state the commands can reach; stages matter, so some statuses appear twice.
PATHS: dict[str, list[str]] = {
    "NEW": [],
    "CREATED": ["create"],
    "PAID": _PAID,
    "PAID+stock_checked": [*_PAID, "check_stock_partial"],
    "OUT_OF_STOCK": [*_PAID, "check_stock_all_short"],
    "PICKING": _PICKING,
    "PICKING+packed": _PACKED,
    "DELIVERING": _DELIVERING,
    "EXCEPTION_HANDLING": [*_DELIVERING, "report_exception"],
    "DELIVERING+redispatched": [*_DELIVERING, "report_exception", "redispatch"],
    "SIGNED": _SIGNED,
    "RETURNING+refused": [*_DELIVERING, "refuse"],
    "RETURNING+after_signing": [*_SIGNED, "start_return"],
    "RETURNED": [*_SIGNED, "start_return", "complete_return"],
    "CLAIMING": [*_SIGNED, "open_claim"],
    "CLAIMING+from_exception": [*_DELIVERING, "report_exception", "open_claim"],
    "CLAIM_SETTLED": [*_SIGNED, "open_claim", "settle_claim"],
    "CANCELLED": ["create", "cancel"],
    "CANCELLED+from_out_of_stock": [*_PAID, "check_stock_all_short", "cancel"],
}


def status_of(situation: str) -> str:
    """The order status of a situation name (``PICKING+packed`` -> ``PICKING``)."""
    return situation.split("+", 1)[0]


def drive(service: OrderService, order_id: str, steps: list[str], start: int = T0) -> int:
    """Run ``steps`` on ``order_id``; returns the instant of the next step."""
    at = start
    for step in steps:
        command, kwargs = command_for(step, order_id, at)
        service.execute(command, order_id, **kwargs)
        at += 5 * MINUTE
    return at


ENDINGS = {"signed": "SIGNED", "redispatched": "SIGNED", "refused": "RETURNING", "cancelled": "CANCELLED",
           "out_of_stock": "OUT_OF_STOCK"}


def record_stories(service: OrderService, n_orders: int, prefix: str) -> dict[str, str]:
    """Record ``n_orders`` simulator stories (cycling through the endings); returns order id -> final status."""
    expected = {}
    endings = list(ENDINGS)
    for i in range(n_orders):
        order_id = f"{prefix}-{i:04d}"
        ending = endings[i % len(endings)]
        for record_type, record in order_story(order_id, T0 + i * MINUTE, ending=ending):
            command, oid, kwargs = to_command(record_type, record)
            service.execute(command, oid, **kwargs)
        expected[order_id] = ENDINGS[ending]
    return expected


def pause_after_load(service: Any, barrier: threading.Barrier) -> None:
    """Make ``service`` pause after loading an aggregate until the other writer has loaded it too
    (forces the race that optimistic concurrency must resolve)."""
    load = service.repository.get

    def get(*args: Any, **kwargs: Any) -> Any:
        aggregate = load(*args, **kwargs)
        barrier.wait(timeout=10)
        return aggregate

    service.repository.get = get
