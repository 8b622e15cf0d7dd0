"""The records the delivery worker publishes about itself. Pure.

- ``dead_letter_record``: a ``WebhookDeadLetter`` on ``kuailv.webhook-dead-letters.v1`` (key: the delivery id).
- ``disabled_alert``: an ``Alert`` of rule ``webhook_disabled`` on ``kuailv.alerts.v1`` (key: its alert id,
  ``webhook_disabled/subscription/<id>``), OPEN when a subscription is disabled, RESOLVED when it is resumed;
  audience operators. It reaches people like every alert: the WebSocket feed, and operators' own webhook
  subscriptions of kind ``alert``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhooks.subscriptions import Subscription

DISABLED_RULE = "webhook_disabled"
DISABLED_RULE_VERSION = 1


def dead_letter_record(row: Mapping[str, Any], consumer: str, failed_at_ms: int) -> dict[str, Any]:
    """The Kafka record of a dead outbox row (``WebhookStore.unpublished_dead_letters``)."""
    return {
        "delivery_id": row["delivery_id"], "subscription_id": row["subscription_id"], "url": row["url"],
        "event_type": row["event_type"], "order_key": row["order_key"], "source_topic": row["source_topic"],
        "source_partition": int(row["source_partition"]), "source_offset": int(row["source_offset"]),
        "attempts": int(row["attempts"]), "first_attempt_at": row["first_attempt_at"],
        "last_attempt_at": row["last_attempt_at"], "last_status": row["last_status"],
        "last_error": row["last_error"], "reason_code": row["dead_reason_code"] or "RETRIES_EXHAUSTED",
        "reason": row["dead_reason"] or "", "body": row["body"], "consumer": consumer,
        "failed_at": int(row["finished_at"] or failed_at_ms),
    }


def disabled_alert_id(subscription_id: str) -> str:
    return f"{DISABLED_RULE}/subscription/{subscription_id}"


def disabled_alert(sub: Subscription, *, resolved: bool, now_ms: int) -> dict[str, Any]:
    """The notice of ``sub``'s disabling (``resolved``: it was resumed)."""
    health = sub.health
    evidence = {"subscription_id": sub.id, "url": sub.url, "reason": sub.disabled_reason or "",
                "consecutive_failures": str(health.consecutive_failures),
                "failing_since": str(health.failing_since_ms) if health.failing_since_ms is not None else "",
                "disabled_count": str(sub.disabled_count)}
    opened = sub.disabled_at_ms if sub.disabled_at_ms is not None else now_ms
    message = (f"webhook subscription {sub.id} ({sub.url}) was resumed" if resolved else
               f"webhook subscription {sub.id} ({sub.url}) disabled: {sub.disabled_reason}")
    return {
        "alert_id": disabled_alert_id(sub.id), "rule_id": DISABLED_RULE, "rule_version": DISABLED_RULE_VERSION,
        "severity": "WARNING", "status": "RESOLVED" if resolved else "OPEN", "order_id": None, "driver_id": None,
        "vehicle_id": None, "warehouse_id": None, "customer_id": None, "opened_at": opened,
        "updated_at": now_ms if resolved else opened, "resolved_at": now_ms if resolved else None,
        "occurrences": max(sub.disabled_count, 1), "message": message, "evidence": evidence, "location": None,
        "audience": ["OPERATOR"],
    }
