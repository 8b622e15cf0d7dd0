"""Webhook subscriptions: who gets which events, where, signed with which secret. Pure data and checks; the
store is ``webhooks.store``.

A subscription has an ``id`` (``sub_...``), an http(s) ``url``, a ``whsec_`` secret (and, for a grace period
after a rotation, the previous one), filters, a ``state`` and its failure streak.

Filters (every one given must match):

- ``kinds``: ``order_change`` (an order's new state on ``kuailv.order-state.v1``), ``alert`` (a WARNING or
  CRITICAL alert on ``kuailv.alerts.v1``), ``notice`` (an INFO alert: driver nearby, arriving soon);
- ``role``: alerts whose audience includes the role; order changes of a ``warehouse_staff`` subscription
  carry no contact data;
- ``customer_id``, ``driver_id``, ``warehouse_id``, ``order_id``: events about that customer (merchant),
  driver, warehouse, order.

A subscription for a scoped role (merchant, customer, driver, warehouse staff) must name its tenant
(``customer_id``, ``driver_id``, ``warehouse_id``), as the API's policy pins those roles to their tenant.

States: ``active`` (delivering), ``paused`` (matching events are kept in the outbox and sent in order on
resume), ``disabled`` (by the disable rule or a 410: matches nothing; its pending deliveries are
dead-lettered; resuming re-enables it with a clean streak).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from service.policy import ROLES, TENANT_CLAIM
from webhooks.delivery_policy import Health

EVENT_KINDS = ("order_change", "alert", "notice")
STATES = ("active", "paused", "disabled")
TENANT_FILTERS = ("customer_id", "driver_id", "warehouse_id")


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(12)


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host; ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url must be an http or https URL, got scheme {parts.scheme or '(none)'!r}")
    if not parts.hostname:
        raise ValueError("url has no host")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ValueError(f"url: {exc}") from None
    return url


@dataclass(frozen=True, slots=True)
class Filters:
    kinds: tuple[str, ...] = EVENT_KINDS
    role: str | None = None
    customer_id: str | None = None
    driver_id: str | None = None
    warehouse_id: str | None = None
    order_id: str | None = None

    def problems(self) -> dict[str, str]:
        """Field -> what is wrong with it (empty when the filters are usable)."""
        out: dict[str, str] = {}
        if not self.kinds:
            out["kinds"] = f"give at least one of {', '.join(EVENT_KINDS)}"
        unknown = sorted(set(self.kinds) - set(EVENT_KINDS))
        if unknown:
            out["kinds"] = f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(EVENT_KINDS)}"
        if self.role is not None and self.role not in ROLES:
            out["role"] = f"role must be one of {', '.join(ROLES)}, got {self.role!r}"
        claim = TENANT_CLAIM.get(self.role or "")
        if claim is not None and not getattr(self, claim):
            out[claim] = f"a {self.role} subscription must name its {claim} (its tenant)"
        return out


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    secret: str
    filters: Filters
    state: str
    created_by: str
    created_at_ms: int
    updated_at_ms: int
    description: str = ""
    previous_secret: str | None = None
    previous_secret_until_ms: int | None = None
    health: Health = field(default_factory=Health)
    disabled_reason: str | None = None
    disabled_at_ms: int | None = None
    disabled_count: int = 0
    notice: str | None = None  # the disable notice: None | open_pending | open | resolve_pending

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The current secret, and the previous one while its grace period lasts."""
        out = [self.secret]
        if self.previous_secret and (self.previous_secret_until_ms or 0) > now_ms:
            out.append(self.previous_secret)
        return out
