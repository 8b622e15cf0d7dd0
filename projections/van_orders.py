"""The orders on each van: ``VanOrder`` repartition records derived from order views. Pure.

GPS is keyed by driver, orders by order id. Per-driver decisions (customer-site fences, ETAs)
need the orders on the van, and must not read Redis inside a decision (every engine must see
the same inputs), so the order projection publishes a ``kuailv.van-orders.v1`` record keyed by
driver whenever an order's place on a van changes:

==================================  ==========================================================
order view                          VanOrder records
==================================  ==========================================================
dispatched (DELIVERING)             ON_BOARD for the driver
exception (EXCEPTION_HANDLING)      nothing new: the goods are still on the van
re-dispatched to another driver     OFF_BOARD for the old driver, ON_BOARD for the new one
signed (SIGNED)                     DELIVERED for the driver
refused, returning, claim, cancel   OFF_BOARD for the driver (no customer stop ahead)
==================================  ==========================================================

A record is emitted only when (driver, state, dispatch count) moves, so re-folding the same
events emits nothing new; consumers keep the highest ``order_version`` per order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

View = Mapping[str, Any]
_ON_BOARD = frozenset({"DELIVERING", "EXCEPTION_HANDLING"})


def placement(view: View | None) -> tuple[str, str, int] | None:
    """(driver id, VanOrder state, dispatch count) of an order, or None before any dispatch."""
    if view is None or view.get("driver") is None:
        return None
    status = view["status"]
    state = "ON_BOARD" if status in _ON_BOARD else "DELIVERED" if status == "SIGNED" else "OFF_BOARD"
    return view["driver"]["driver_id"], state, view["dispatch_count"]


def weight_kg(view: View) -> float:
    """The order's weight: measured, else expected, else ordered kilograms."""
    total = 0.0
    for line in view["lines"]:
        kg = line.get("measured_kg")
        kg = kg if kg is not None else line.get("expected_kg")
        total += kg if kg is not None else (line["ordered"] if line["unit"] == "KG" else 0.0)
    return round(total, 3)


def _record(view: View, driver_id: str, vehicle_id: str, state: str, at: int) -> dict[str, Any]:
    dest = view["destination"]
    return {"driver_id": driver_id, "vehicle_id": vehicle_id, "order_id": view["order_id"],
            "order_version": view["version"], "customer_id": view["customer_id"],
            "warehouse_id": view["warehouse_id"], "state": state,
            "destination": {"lat": dest["lat"], "lng": dest["lng"]},
            "window_start": view["delivery_window_start"], "window_end": view["delivery_window_end"],
            "dispatch_count": view["dispatch_count"], "weight_kg": weight_kg(view), "event_time": at}


def van_order_records(before: View | None, after: View) -> list[dict[str, Any]]:
    """The VanOrder records the change ``before`` -> ``after`` of one order's view implies."""
    old, new = placement(before), placement(after)
    if new is None or old == new:
        return []
    at = after["updated_at"]
    out = []
    if old is not None and old[0] != new[0] and old[1] == "ON_BOARD" and before is not None:
        out.append(_record(after, old[0], before["driver"]["vehicle_id"], "OFF_BOARD", at))
    out.append(_record(after, new[0], after["driver"]["vehicle_id"], new[1], at))
    return out
