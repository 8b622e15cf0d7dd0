"""Webhook subscriptions through the API (operators only: ``service.policy.may_manage_subscriptions``).

``POST /webhooks/subscriptions`` creates one and is the only answer that carries its secret (and
``rotate-secret`` the new one); list, get, pause, resume, delete; a subscription's recent deliveries and
dead letters. The store (``KUAILV_WEBHOOK_STORE``) opens at the first request, never at import. Bad input is
422 naming the field (``detail[].loc``), another state's conflict 409, a missing subscription 404.

No ``from __future__ import annotations`` here: FastAPI resolves the handlers' annotations at run time.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field, field_validator

from config.settings import Settings
from projections.timefmt import iso
from service.auth import Principal
from service.policy import may_manage_subscriptions
from webhooks.signing import new_secret
from webhooks.subscriptions import EVENT_KINDS, Filters, Subscription, check_url, new_subscription_id

EventKind = Literal["order_change", "alert", "notice"]
RoleName = Literal["operator", "customer_service", "merchant", "customer", "driver", "warehouse_staff"]
State = Literal["active", "paused", "disabled"]
Tenant = Annotated[str | None, Field(default=None, min_length=1, max_length=100)]
SubscriptionId = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{24}$", description="sub_ and 24 hex digits")]
MAX_GRACE_S = 30 * 86400


class SubscriptionFilters(BaseModel):
    """Which events reach the subscriber (all given filters must match)."""

    kinds: list[EventKind] = Field(default_factory=lambda: list(EVENT_KINDS), min_length=1,
                                   description="order_change, alert (WARNING/CRITICAL), notice (INFO alerts)")
    role: RoleName | None = Field(None, description="alerts whose audience includes it; warehouse_staff: no contact "
                                                    "data in order changes. A scoped role needs its tenant filter")
    customer_id: Tenant = None
    driver_id: Tenant = None
    warehouse_id: Tenant = None
    order_id: Tenant = None


class SubscriptionCreate(BaseModel):
    url: str = Field(max_length=2000, description="the endpoint: an absolute http(s) URL")
    description: str = Field("", max_length=500)
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value)


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str
    filters: SubscriptionFilters
    state: State
    created_by: str
    created_at: str
    updated_at: str
    consecutive_failures: int = Field(description="dead-lettered deliveries since the last success")
    failing_since: str | None = Field(description="the first failed attempt since the last success")
    disabled_reason: str | None
    disabled_at: str | None
    previous_secret_valid_until: str | None = Field(description="after a rotation: until when the old secret "
                                                                "still signs (a second signature)")


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="whsec_...: shown only here; verify signatures with it")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class RotateSecret(BaseModel):
    grace_s: int | None = Field(None, ge=0, le=MAX_GRACE_S, description="how long the old secret still signs "
                                                                         "(default KUAILV_WEBHOOK_ROTATION_GRACE_S)")


class RotatedSecret(BaseModel):
    subscription: SubscriptionOut
    secret: str = Field(description="the new whsec_... secret: shown only here")


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="the webhook-id of every attempt")
    event_type: str
    order_key: str
    source_topic: str
    source_partition: int
    source_offset: int
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    created_at: str
    next_attempt_at: str | None
    first_attempt_at: str | None
    last_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    finished_at: str | None
    dead_reason_code: str | None
    dead_reason: str | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


def _out(sub: Subscription, now_ms: int) -> dict[str, Any]:
    f = sub.filters
    grace = sub.previous_secret_until_ms if sub.previous_secret and (sub.previous_secret_until_ms or 0) > now_ms \
        else None
    return {"id": sub.id, "url": sub.url, "description": sub.description,
            "filters": {"kinds": list(f.kinds), "role": f.role, "customer_id": f.customer_id, "driver_id": f.driver_id,
                        "warehouse_id": f.warehouse_id, "order_id": f.order_id},
            "state": sub.state, "created_by": sub.created_by, "created_at": iso(sub.created_at_ms),
            "updated_at": iso(sub.updated_at_ms), "consecutive_failures": sub.health.consecutive_failures,
            "failing_since": iso(sub.health.failing_since_ms), "disabled_reason": sub.disabled_reason,
            "disabled_at": iso(sub.disabled_at_ms), "previous_secret_valid_until": iso(grace)}


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    times = ("created_at", "first_attempt_at", "last_attempt_at", "finished_at")
    out = {k: (iso(v) if k in times else v) for k, v in row.items() if k != "seq"}
    out["next_attempt_at"] = iso(row["next_attempt_at"]) if row["status"] == "pending" else None
    return out


def webhook_router(settings: Settings, caller: Callable[..., Principal], audit: Any = None) -> APIRouter:
    """``audit``: a ``service.audit_trail.ApiAudit``; every change is appended to the ``subscriptions`` chain."""
    router = APIRouter(prefix="/webhooks/subscriptions", tags=["webhooks"])

    def audited(who: Principal, verb: str, subscription_id: str, **details: Any) -> None:
        if audit is not None:
            audit.record(who, f"subscription.{verb}", subscription_id, details)
    holder = _StoreHolder(settings.webhooks.store_url)

    def operator(who: Annotated[Principal, Depends(caller)]) -> Principal:
        access = may_manage_subscriptions(who)
        if not access.allowed:
            raise HTTPException(status_code=403, detail=access.reason)
        return who

    Operator = Annotated[Principal, Depends(operator)]

    @router.post("", status_code=201, response_model=SubscriptionCreated)
    def create(body: SubscriptionCreate, who: Operator) -> dict[str, Any]:
        """Create a subscription; the answer carries its secret, the only time it is shown."""
        filters = Filters(tuple(dict.fromkeys(body.filters.kinds)), body.filters.role, body.filters.customer_id,
                          body.filters.driver_id, body.filters.warehouse_id, body.filters.order_id)
        problems = filters.problems()
        if problems:
            raise HTTPException(status_code=422, detail=[{"loc": ["body", "filters", field], "msg": msg,
                                                          "type": "value_error"} for field, msg in problems.items()])
        now = _now_ms()
        sub = Subscription(new_subscription_id(), body.url, new_secret(), filters, "active", who.subject, now, now,
                           body.description)
        with holder.store() as store:
            store.create(sub)
        audited(who, "create", sub.id, url=sub.url, filters=_out(sub, now)["filters"])
        return {**_out(sub, now), "secret": sub.secret}

    @router.get("", response_model=SubscriptionList)
    def listing(who: Operator, state: State | None = None) -> dict[str, Any]:
        """Every subscription (or those in one state), oldest first; secrets are never listed."""
        with holder.store() as store:
            subs = store.subscriptions(states=(state,) if state else None)
        now = _now_ms()
        return {"subscriptions": [_out(s, now) for s in subs]}

    @router.get("/{subscription_id}", response_model=SubscriptionOut)
    def get(subscription_id: SubscriptionId, who: Operator) -> dict[str, Any]:
        """One subscription, with its failure streak and state."""
        with holder.store() as store:
            sub = store.get(subscription_id)
        if sub is None:
            raise HTTPException(status_code=404, detail=f"no webhook subscription {subscription_id}")
        return _out(sub, _now_ms())

    @router.post("/{subscription_id}/pause", response_model=SubscriptionOut)
    def pause(subscription_id: SubscriptionId, who: Operator) -> dict[str, Any]:
        """Hold deliveries (matching events wait in the outbox, sent in order on resume)."""
        now = _now_ms()
        with holder.store() as store:
            out = _out(store.pause(subscription_id, now), now)
        audited(who, "pause", subscription_id)
        return out

    @router.post("/{subscription_id}/resume", response_model=SubscriptionOut)
    def resume(subscription_id: SubscriptionId, who: Operator) -> dict[str, Any]:
        """Deliver again; a disabled subscription starts a clean failure streak (its notice is resolved)."""
        now = _now_ms()
        with holder.store() as store:
            out = _out(store.resume(subscription_id, now), now)
        audited(who, "resume", subscription_id)
        return out

    @router.delete("/{subscription_id}", status_code=204)
    def delete(subscription_id: SubscriptionId, who: Operator) -> Response:
        """Delete the subscription and its deliveries (pending ones are not sent)."""
        with holder.store() as store:
            store.delete(subscription_id)
        audited(who, "delete", subscription_id)
        return Response(status_code=204)

    @router.post("/{subscription_id}/rotate-secret", response_model=RotatedSecret)
    def rotate(subscription_id: SubscriptionId, who: Operator,
               body: Annotated[RotateSecret | None, Body()] = None) -> dict[str, Any]:
        """A new secret signs from now on; the old one adds a second signature during the grace period."""
        grace_s = body.grace_s if body and body.grace_s is not None else settings.webhooks.rotation_grace_s
        now = _now_ms()
        secret = new_secret()
        with holder.store() as store:
            sub = store.rotate(subscription_id, secret, now + round(grace_s * 1000), now)
        audited(who, "rotate_secret", subscription_id, grace_s=grace_s)
        return {"subscription": _out(sub, now), "secret": secret}

    @router.get("/{subscription_id}/deliveries", response_model=DeliveryList)
    def deliveries(subscription_id: SubscriptionId, who: Operator,
                   status: Literal["pending", "delivered", "dead"] | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """The subscription's deliveries, newest first."""
        return {"deliveries": [_delivery(r) for r in holder.deliveries(subscription_id, status, limit)]}

    @router.get("/{subscription_id}/dead-letters", response_model=DeliveryList)
    def dead_letters(subscription_id: SubscriptionId, who: Operator,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """The deliveries given up on, newest first, with the reason (also on kuailv.webhook-dead-letters.v1)."""
        return {"deliveries": [_delivery(r) for r in holder.deliveries(subscription_id, "dead", limit)]}

    return router


def _now_ms() -> int:
    return int(time.time() * 1000)


class _StoreHolder:
    """The store, opened at the first request; its errors as HTTP answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Any = None
        self._lock = threading.Lock()

    @contextmanager
    def store(self) -> Iterator[Any]:
        from webhooks.sql import StoreError, StoreUnavailable
        from webhooks.store import Conflict, NotFound, WebhookStore

        try:
            with self._lock:
                if self._store is None:
                    self._store = WebhookStore.from_url(self.url)
            yield self._store
        except NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except Conflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except (StoreUnavailable, StoreError) as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    def deliveries(self, sub_id: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        with self.store() as store:
            if store.get(sub_id) is None:
                raise HTTPException(status_code=404, detail=f"no webhook subscription {sub_id}")
            return store.deliveries(sub_id, status, limit)
