"""Order-event logs as the command side now writes them: every personal field sealed. Shared by the
privacy tests and the parity tests of the worker, the Flink logic and replay (a sealed variant)."""

from __future__ import annotations

from typing import Any

from privacy.fields import seal_record
from privacy.keystore import DEV_MASTER_KEY, KeyStore, SqliteKeyStore
from simulator.events import Event

KEYS = SqliteKeyStore(None, DEV_MASTER_KEY)  # in memory: one store for the whole test session


def sealed_log(events: list[Event], keys: KeyStore = KEYS) -> list[Event]:
    """``events`` with their personal fields sealed like ``OrderService`` seals them: OrderCreated's under the
    customer, OrderDispatched's under its driver, OrderDelivered's under the order's customer. A re-delivered
    copy of an event (same dict) gets the same sealed copy, as a re-sent record carries the same bytes."""
    customers: dict[str, str] = {e["order_id"]: e["customer_id"] for t, e in events if t == "OrderCreated"}
    done: dict[int, Event] = {}
    out = []
    for record_type, event in events:
        if id(event) not in done:
            subjects = {"customer": customers.get(event["order_id"], ""), "driver": event.get("driver_id", "")}
            subjects = {k: v for k, v in subjects.items() if v}
            done[id(event)] = (record_type, seal_record(record_type, event, subjects, keys))
        out.append(done[id(event)])
    return out


def has_plaintext(value: Any, texts: tuple[str, ...]) -> bool:
    """Does any string inside ``value`` contain one of ``texts``?"""
    if isinstance(value, str):
        return any(t in value for t in texts)
    if isinstance(value, dict):
        return any(has_plaintext(v, texts) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_plaintext(v, texts) for v in value)
    return False
