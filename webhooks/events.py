"""What a consumed record means to subscribers: its kind, type, ordering key and JSON body. Pure.

Bodies follow the Standard Webhooks payload shape, ``{"type", "timestamp", "data"}``:

- from ``kuailv.order-state.v1`` (``OrderState``): type ``order.changed``; data = the order as
  ``GET /orders/{id}`` shows it (camelCase, ISO times), made from the record alone;
- from ``kuailv.alerts.v1`` (``Alert``): type ``alert.opened`` / ``alert.updated`` / ``alert.resolved``
  (``notice.*`` for INFO alerts); data = the alert record as ``GET /alerts`` shows it (epoch ms).

``timestamp`` is the event time of the change (``updated_at``), ISO-8601 UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from projections.order_view import public_view
from projections.timefmt import iso
from service.policy import redact
from webhooks.subscriptions import Filters

# API role -> the alert audience symbol (schemas/avro/alerts/alert.avsc, Role)
AUDIENCE_OF_ROLE = {"operator": "OPERATOR", "customer_service": "CUSTOMER_SERVICE", "merchant": "MERCHANT",
                    "customer": "CUSTOMER", "driver": "DRIVER", "warehouse_staff": "WAREHOUSE"}


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    kind: str  # order_change | alert | notice
    type: str  # the body's "type"
    order_key: str  # deliveries of one subscription and key go out one after the other
    dedupe_key: str  # the same change seen again (a re-published record) is not delivered twice
    timestamp_ms: int
    data: Mapping[str, Any]
    order_id: str | None = None
    customer_id: str | None = None
    driver_id: str | None = None
    warehouse_id: str | None = None
    audience: frozenset[str] = frozenset()  # alert audience; empty: everyone (order changes)


def event_of(record_type: str, value: Mapping[str, Any]) -> WebhookEvent:
    """The event of a decoded ``OrderState`` or ``Alert`` (epoch-ms times); ``ValueError`` for another type."""
    if record_type == "OrderState":
        return _order_change(value)
    if record_type == "Alert":
        return _alert(value)
    raise ValueError(f"{record_type} records are not delivered to webhooks")


def _order_change(view: Mapping[str, Any]) -> WebhookEvent:
    order_id = view["order_id"]
    driver = view.get("driver") or {}
    return WebhookEvent("order_change", "order.changed", order_id,
                        f"order/{order_id}@{view['version']}/{view['rejected_events']}", int(view["updated_at"]),
                        public_view(view), order_id, view["customer_id"], driver.get("driver_id"),
                        view["warehouse_id"])


def _alert(alert: Mapping[str, Any]) -> WebhookEvent:
    kind = "notice" if alert["severity"] == "INFO" else "alert"
    if alert["status"] == "RESOLVED":
        change = "resolved"
    elif alert["updated_at"] == alert["opened_at"]:
        change = "opened"
    else:
        change = "updated"
    order_id = alert.get("order_id")
    alert_id = alert["alert_id"]
    return WebhookEvent(kind, f"{kind}.{change}", order_id or f"alert/{alert_id}",
                        f"alert/{alert_id}@{alert['updated_at']}/{alert['status']}/{alert['occurrences']}",
                        int(alert["updated_at"]), dict(alert), order_id, alert.get("customer_id"),
                        alert.get("driver_id"), alert.get("warehouse_id"), frozenset(alert.get("audience") or ()))


def matches(filters: Filters, event: WebhookEvent) -> bool:
    if event.kind not in filters.kinds:
        return False
    if filters.role is not None and event.audience and AUDIENCE_OF_ROLE[filters.role] not in event.audience:
        return False
    wanted = (("order_id", event.order_id), ("customer_id", event.customer_id), ("driver_id", event.driver_id),
              ("warehouse_id", event.warehouse_id))
    return all(getattr(filters, name) in (None, have) for name, have in wanted)


@dataclass(frozen=True, slots=True)
class _Viewer:
    role: str
    tenant: str | None = None


def body(event: WebhookEvent, role: str | None) -> bytes:
    """The JSON body for a subscriber of ``role`` (warehouse staff get orders without contact data)."""
    data: Any = event.data
    if event.kind == "order_change" and role is not None:
        data = redact(_Viewer(role), dict(data))
    return orjson.dumps({"type": event.type, "timestamp": iso(event.timestamp_ms), "data": data})
