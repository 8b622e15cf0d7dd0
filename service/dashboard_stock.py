"""Stock on the dashboard (``GET /dashboard/stock``, ``GET /dashboard/merchant-stock``): a warehouse's levels and
replenishment suggestions (``streams.sinks.redis_stock``, docs/stock.md), and a customer's stock warnings: the
SKUs of their newest orders that are low in the warehouse that served the order, and those orders' short lines.
Each asks ``service.policy`` first (403 with its reason)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from config.settings import Settings
from projections.stock import below_reorder_point
from projections.timefmt import iso
from service import funnel
from service.policy import Caller, may_read_customer_stock, may_read_stock
from service.reads import allow
from streams import queries
from streams.sinks.redis_stock import RedisStock

MERCHANT_ORDERS = 200  # a customer's stock warnings: the SKUs of their newest orders
OrderFacts = Callable[[Sequence[str]], dict[str, dict[str, Any]]]  # service.dashboard_reads.OrderFacts.get


def stock(settings: Settings, who: Caller, warehouse_id: str) -> dict[str, Any]:
    allow(may_read_stock(who, warehouse_id))
    with queries.pooled_client(settings) as r:
        store = RedisStock(r, settings.redis_prefix)
        levels, suggestions = store.levels(warehouse_id), store.suggestions(warehouse_id)
    return {"warehouseId": warehouse_id,
            "levels": [level_doc(levels[sku]) for sku in sorted(levels)],
            "suggestions": [suggestion_doc(suggestions[sku]) for sku in sorted(suggestions)]}


def merchant_stock(settings: Settings, order_facts: OrderFacts, who: Caller, customer_id: str) -> dict[str, Any]:
    """Low stock of the SKUs in the customer's newest orders, in the warehouses that served them, and those
    orders' short lines (``order_facts``: what ``service.dashboard_reads`` keeps of each order)."""
    allow(may_read_customer_stock(who, customer_id))
    chosen = funnel.newest(queries.order_ids(settings, customer=customer_id), MERCHANT_ORDERS)
    facts = order_facts(chosen)
    wanted: dict[str, dict[str, str]] = {}  # warehouse -> sku -> name
    short_lines = []
    for oid in chosen:
        f = facts.get(oid)
        for sku, name, short in f["lines"] if f else ():
            wanted.setdefault(f["warehouseId"], {}).setdefault(sku, name)
            if short > 0:
                short_lines.append({"orderId": oid, "sku": sku, "name": name, "short": short})
    warnings = []
    with queries.pooled_client(settings) as r:
        store = RedisStock(r, settings.redis_prefix)
        for wh in sorted(wanted):
            levels, suggestions = store.levels(wh), store.suggestions(wh)
            for sku, name in sorted(wanted[wh].items()):
                level = levels.get(sku)
                if level is not None and low(level):
                    qty = (suggestions.get(sku) or {}).get("suggested_quantity")
                    warnings.append({"sku": sku, "name": name, "warehouseId": wh, "onHand": level["on_hand"],
                                     "reorderPoint": level["reorder_point"], "low": True,
                                     "restockSuggested": qty or None})
    return {"customerId": customer_id, "warnings": warnings, "shortLines": short_lines}


def low(level: Mapping[str, Any]) -> bool:
    """A stored level (``projections.stock.level_view``) below its reorder point, as the low-stock rule decides."""
    return below_reorder_point(level["on_hand"], level.get("reorder_point"))


def level_doc(level: Mapping[str, Any]) -> dict[str, Any]:
    """A stock level (``projections.stock.level_view``) as the dashboard shows it."""
    return {"sku": level["sku"], "unit": level["unit"], "onHand": level["on_hand"],
            "reorderPoint": level["reorder_point"], "low": low(level), "day": level["day"],
            "pickedToday": level["picked_today"], "shortToday": level["short_today"],
            "receivedToday": level["received_today"], "returnedToday": level["returned_today"],
            "updatedAt": iso(level["updated_at"])}


def suggestion_doc(s: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ReplenishmentSuggestion`` (as stored: epoch-ms times) as the dashboard shows it."""
    return {"sku": s["sku"], "quantity": s["suggested_quantity"], "reason": s["reason"],
            "decidedAt": iso(s["decided_at"]), "onHand": s["on_hand"], "reorderPoint": s["reorder_point"],
            "orderUpTo": s["order_up_to"], "unit": s["unit"], "forecastDaily": s["forecast_daily"],
            "safetyStock": s["safety_stock"], "suggestionId": s["suggestion_id"]}
