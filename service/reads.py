"""The reads of the API, shared by REST (``service.app``) and GraphQL (``service.graphql_api``).

Each read asks ``service.policy`` (the one policy) and raises a ``ReadError`` that says why: ``Denied``
(403, the policy's reason), ``NotFound`` (404), ``Invalid`` (422, a parameter), ``Unavailable`` (503, a
store did not answer). REST turns them into HTTP errors, GraphQL into errors with the same message and
``extensions.code``. The data comes from ``service.orders`` (Redis first, rebuilt from the log),
``streams.queries`` (Redis) and ``service.track`` (InfluxDB). Synchronous: REST runs them in its thread
pool, GraphQL hands them to one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from config.settings import Settings
from service import orders as order_store
from service import track as tracks
from service.alert_acks import acknowledgements, with_acknowledgements
from service.policy import (
    Access,
    Caller,
    list_scope,
    may_list_all_alerts,
    may_read_driver,
    may_read_track,
    order_access,
    redact_alert,
    visible_load,
)
from service.reveal import Revealer
from streams import queries

INDEXES = ("status", "customer", "driver", "warehouse")
MAX_ALERTS = 1000


class ReadError(Exception):
    status = 500
    code = "INTERNAL_SERVER_ERROR"


class Denied(ReadError):
    status = 403
    code = "FORBIDDEN"


class NotFound(ReadError):
    status = 404
    code = "NOT_FOUND"


class Invalid(ReadError):
    status = 422
    code = "BAD_USER_INPUT"


class Unavailable(ReadError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


def allow(access: Access) -> None:
    if not access.allowed:
        raise Denied(access.reason)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def driver_id_of(order: Mapping[str, Any]) -> str | None:
    return (order.get("driverInfo") or {}).get("driverId")


class Reads:
    """``clock_ms`` only ends the track window of an order still out for delivery."""

    def __init__(self, settings: Settings, codec: Any, clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self.settings = settings
        self.codec = codec
        self.clock_ms = clock_ms
        self.reveal = Revealer(settings)

    # ------------------------------------------------------------------ orders
    def order(self, who: Caller, order_id: str) -> dict[str, Any]:
        """The order as ``who`` may see it (scenario 1 JSON)."""
        doc = order_store.order(self.settings, self.codec, order_id)
        if doc is None:
            raise NotFound(f"order {order_id} is neither in Redis nor on {order_store.ORDER_EVENTS.name}")
        allow(order_access(who, doc))
        return self.reveal.present(who, doc)

    def orders(self, who: Caller, *, status: str | None = None, customer: str | None = None,
               driver: str | None = None, warehouse: str | None = None, cursor: str | None = None,
               limit: int = 50) -> dict[str, Any]:
        """A page of orders by status, customer, driver and/or warehouse (the Redis indexes intersected, then
        paged in id order); ``nextCursor`` continues it."""
        scope, access = list_scope(who, status, customer, driver, warehouse)
        allow(access)
        if not any(scope.get(k) for k in INDEXES):
            raise Invalid("give status, customer, driver or warehouse")
        if not 1 <= limit <= order_store.MAX_PAGE:
            raise Invalid(f"limit must be 1..{order_store.MAX_PAGE}, got {limit}")
        try:
            chosen, nxt = order_store.page(order_store.matching_ids(self.settings, scope), cursor, limit)
        except ValueError as exc:  # a cursor this API did not give out
            raise Invalid(str(exc)) from exc
        docs = [d for d in (queries.order_document(self.settings, oid) for oid in chosen) if d is not None]
        return {"orders": [self.reveal.present(who, d) for d in docs], "nextCursor": nxt}

    # ------------------------------------------------------------------ alerts
    def order_alerts(self, who: Caller, order_id: str) -> list[dict[str, Any]]:
        """REST: the order's open alerts with their acknowledgements."""
        return self._acknowledged(self.alerts_of(who, self.order(who, order_id)))

    def alerts_of(self, who: Caller, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The open alerts of an order already read (same access as the order)."""
        allow(order_access(who, order))
        return [redact_alert(who, a) for a in queries.alert_listing(self.settings, order_id=order["orderId"])]

    def alerts(self, who: Caller, *, open_only: bool = True, limit: int = 100) -> list[dict[str, Any]]:
        """Open (or all) alerts, newest first, with their acknowledgements: operators and customer service."""
        allow(may_list_all_alerts(who))
        if not 1 <= limit <= MAX_ALERTS:
            raise Invalid(f"limit must be 1..{MAX_ALERTS}, got {limit}")
        return self._acknowledged(queries.alert_listing(self.settings, open_only=open_only, limit=limit))

    def _acknowledged(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts with their acknowledgement (``service.alert_acks``) as ``acknowledged``, or null."""
        with queries.pooled_client(self.settings) as r:
            acks = acknowledgements(r, self.settings.redis_prefix, [a["alert_id"] for a in alerts])
        return with_acknowledgements(alerts, acks)

    # ------------------------------------------------------------------ drivers
    def _driver_scope(self, who: Caller, driver_id: str, via: Mapping[str, Any] | None) -> frozenset[str]:
        """Ask the policy whether ``who`` may see the driver (``via``: an order ``who`` read, carried by that
        driver); the caller's own order ids (merchant, customer) for ``visible_load``."""
        drivers: frozenset[str] = frozenset()
        own: frozenset[str] = frozenset()
        if who.role in ("merchant", "customer") and who.tenant:
            own = frozenset(queries.order_ids(self.settings, customer=who.tenant))
            carried = via is not None and driver_id_of(via) == driver_id and order_access(who, via).allowed
            if carried or own & queries.order_ids(self.settings, driver=driver_id):
                drivers = frozenset({driver_id})
        allow(may_read_driver(who, driver_id, drivers))
        return own

    def position(self, who: Caller, driver_id: str, via: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The driver's newest GPS fix, or None."""
        self._driver_scope(who, driver_id, via)
        return queries.driver_position(self.settings, driver_id)

    def load(self, who: Caller, driver_id: str, via: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """What the driver carries (fleet view), as ``who`` may see it, or None."""
        own = self._driver_scope(who, driver_id, via)
        found = queries.driver_load(self.settings, driver_id)
        return None if found is None else _load_doc(found, visible_load(who, found, own))

    def driver_position(self, who: Caller, driver_id: str) -> dict[str, Any]:
        """REST: the newest fix with the load (404 without a fix)."""
        own = self._driver_scope(who, driver_id, None)
        position = queries.driver_position(self.settings, driver_id)
        if position is None:
            raise NotFound(f"no position of driver {driver_id} yet")
        found = queries.driver_load(self.settings, driver_id)
        return {**position, "load": None if found is None else _load_doc(found, visible_load(who, found, own))}

    # ------------------------------------------------------------------ track
    def track(self, who: Caller, order_id: str, limit: int = 1000) -> dict[str, Any]:
        return self.track_of(who, self.order(who, order_id), limit)

    def track_of(self, who: Caller, order: Mapping[str, Any], limit: int = 1000) -> dict[str, Any]:
        """The GPS track of an order already read, at most ``limit`` points (evenly thinned)."""
        allow(may_read_track(who, order))
        if not 1 <= limit <= tracks.MAX_POINTS:
            raise Invalid(f"limit must be 1..{tracks.MAX_POINTS}, got {limit}")
        try:
            return tracks.track(order, self.clock_ms(), partial(tracks.gps_points, self.settings), limit)
        except tracks.TrackUnavailable as exc:
            raise Unavailable(f"track of order {order['orderId']}: {exc}") from exc


def _load_doc(found: Mapping[str, Any], seen: Mapping[str, Any]) -> dict[str, Any]:
    """The load as the API shows it: the count of all orders on board, the ids the caller may see."""
    return {"at": found["at"], "vehicle_id": found["vehicle_id"], "load_kg": found["load_kg"],
            "orders_on_board": len(found["order_ids"]), "order_ids": list(seen["order_ids"]),
            "stop_order": list(seen.get("stop_order") or ())}
