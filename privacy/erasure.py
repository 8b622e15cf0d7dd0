"""Erasure of a customer's personal data (GDPR art. 17 / CCPA deletion) from an append-only log: crypto-shredding.

``erase_customer`` does, in this order:

1. **Destroys the subject's keys** (``customer:<id>``, every version) in the key store and drops them from
   this process's cache. Every sealed value of that customer, wherever a copy went (the event store, the
   order-event topic, replays, the compacted projection topic, Redis, dead letters, webhook outboxes,
   the audit trail), is from now on ciphertext nobody can open. Other processes' key caches forget
   within ``KUAILV_KEYSTORE_CACHE_TTL_S``.
2. **Purges the derived copies' current values**: for each of the customer's orders (the Redis index),
   the order's view in Redis and its current record on the compacted projection topic are rewritten
   with the customer's personal fields replaced by ``ERASED`` (``"[erased]"``), whether they held
   ciphertext or, for records written before encryption existed, plaintext. Status, lines, times and
   everything else stay exactly as they were: orders, KPIs and alerts fold as before.
3. **Records the erasure** in the audit trail (chain ``erasures``: who, when, which subject, how many
   key versions and orders), the erasure event an auditor asks for.

What it cannot do: a record written in plaintext before the write path sealed personal data stays in
the immutable order-event log until the topic's retention drops it (the order-event topic is kept
forever); rewriting that history is a topic migration, not an erasure (docs/privacy.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from privacy.fields import personal_fields
from privacy.keystore import subject_id
from schemas.topics import ORDER_STATE

ERASED = "[erased]"


@dataclass(frozen=True, slots=True)
class ErasureReport:
    subject: str
    key_versions_destroyed: int
    orders: int
    views_rewritten: int
    at_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "keyVersionsDestroyed": self.key_versions_destroyed, "orders": self.orders,
                "viewsRewritten": self.views_rewritten, "at": self.at_ms}


def scrub_view(view: dict[str, Any], kind: str = "customer") -> dict[str, Any]:
    """The OrderState view (snake_case, as on the topic) with ``kind``'s personal fields set to ``ERASED``
    (sealed or plain; a null field or a missing record stays as it is). Pure; the input is not changed."""
    out = view
    for f in personal_fields("OrderState"):
        if f.kind == kind:
            out = _replace(out, f.path)
    return out


def _replace(node: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(node, dict) or node.get(path[0]) is None:
        return node
    return {**node, path[0]: ERASED if len(path) == 1 else _replace(node[path[0]], path[1:])}


def erase_customer(settings: Settings, customer_id: str, *, keys: Any, codec: Any, actor: tuple[str, str],
                   audit: Callable[..., Any] | None = None, now_ms: Callable[[], int] | None = None) -> ErasureReport:
    """Crypto-shred ``customer_id`` (see the module doc). ``actor`` = (user, role) for the audit entry;
    ``audit`` = ``audit.actions.record_action`` bound to a store (None: the configured store)."""
    import redis
    from confluent_kafka import Producer

    from streams.sinks.kafka_output import idempotent_producer_config
    from streams.sinks.redis_orders import RedisOrderStore

    at = (now_ms or (lambda: int(time.time() * 1000)))()
    subject = subject_id("customer", customer_id)
    destroyed = keys.destroy(subject)
    if hasattr(keys, "invalidate"):
        keys.invalidate(subject)

    client = redis.Redis.from_url(settings.redis_url)
    store = RedisOrderStore(client, settings.redis_prefix, codec)
    order_ids = sorted(store.order_ids(customer=customer_id))
    topic = settings.topic_renames.get(ORDER_STATE.name, ORDER_STATE.name)
    producer = Producer(idempotent_producer_config(settings.kafka_bootstrap, "kuailv-erasure"))
    rewritten = 0
    try:
        for order_id in order_ids:
            view = store.projection(order_id)
            if view is None:
                continue
            clean = scrub_view(view)
            if clean == view:
                continue
            encoded = codec.encode("OrderState", clean)
            client.hset(store.key(order_id), "projection", encoded)
            producer.produce(topic, encoded, key=order_id.encode())
            rewritten += 1
        if producer.flush(30) != 0:
            raise RuntimeError(f"erasure of {subject}: the projection topic {topic} did not take every rewrite")
    finally:
        client.close()
    report = ErasureReport(subject, destroyed, len(order_ids), rewritten, at)
    record = audit or _configured_audit(settings)
    record(actor[0], actor[1], "erasure.customer", customer_id, report.as_dict(), at)
    return report


def _configured_audit(settings: Settings) -> Callable[..., Any]:
    from audit.actions import record_action
    from audit.chain import Keys
    from audit.store import AuditStore

    def record(*args: Any) -> None:
        store = AuditStore.from_url(settings.audit_store, Keys.parse(settings.audit_hmac_keys))
        try:
            record_action(store, *args)
        finally:
            store.close()

    return record
