"""GraphQL at ``/graphql`` (Strawberry): an order with its driver (info, position, load), lines, alerts,
track, ETA and stages in one query; order lists cursor-paged like REST; open alerts.

Strawberry because it is a kept library whose schema is the Python types themselves (type hints, no SDL to
keep in step by hand), with a FastAPI router and the query-limit extensions built in. Every resolver
calls ``service.reads``, the functions behind REST, so the data access and the policy are the same ones
(a cross-tenant read fails with the policy's reason as the error, ``extensions.code`` = ``FORBIDDEN``).
Authentication is REST's bearer dependency: no valid token, HTTP 401 before any query runs. Limits:
depth 6 (``alerts { order { alerts { order ... } } }`` is the one cycle; the deepest path without it
is 5), 15 aliases, 2,000 tokens; ``orders(first:)`` at most 200, ``alerts(limit:)`` 1,000 (as REST);
introspection is capped by graphql-core's own depth rule, and the SDL is published in
``tests/unit/service/graphql_schema.graphql``. The GraphiQL IDE is off (it loads from a CDN) and
queries come by POST only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import strawberry
from fastapi import Depends
from graphql import GraphQLError
from starlette.concurrency import run_in_threadpool
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import GraphQLRouter
from strawberry.types import Info

from projections.timefmt import iso
from service import graphql_types as t
from service.auth import Principal
from service.reads import ReadError, Reads, driver_id_of

log = logging.getLogger(__name__)
MAX_DEPTH = 6
MAX_ALIASES = 15
MAX_TOKENS = 2000


async def _read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking read in the thread pool; a ``ReadError`` becomes a GraphQL error with its code."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ReadError as exc:
        raise GraphQLError(str(exc), extensions={"code": exc.code, "status": exc.status}) from exc


def _ctx(info: Info) -> tuple[Reads, Principal]:
    return info.context["reads"], info.context["who"]


@strawberry.type(description="The driver of an order: what the order knows, and (by the same policy as "
                             "GET /drivers/{id}/position) the newest fix and the load.")
class Driver:
    driver_id: str
    info: t.DriverInfo | None
    order: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="The newest GPS fix (denied to warehouse staff).")
    async def position(self, info: Info) -> t.DriverPosition | None:
        reads, who = _ctx(info)
        return t.position(await _read(reads.position, who, self.driver_id, self.order))

    @strawberry.field(description="Weight and orders on board (denied to warehouse staff).")
    async def load(self, info: Info) -> t.DriverLoad | None:
        reads, who = _ctx(info)
        return t.load(await _read(reads.load, who, self.driver_id, self.order))


@strawberry.type(description="An order as the seed's scenario 1 shows it, with its driver, alerts and track.")
class Order:
    order_id: str
    status: t.OrderStatus
    version: int
    customer_id: str
    warehouse_id: str
    updated_at: str
    eta: str | None
    eta_updated_at: str | None
    eta_source: str | None
    late_risk: float | None = strawberry.field(description="probability of arriving after the window, from the "
                                                           "delay-risk model (while out for delivery)")
    lines: list[t.OrderLine]
    short_lines: list[int]
    stages: list[t.Stage]
    delivery_window: t.TimeWindow
    destination: t.GeoPoint | None
    dispatch_count: int
    exception: t.OrderException | None
    signature: t.Signature | None
    payment: t.Payment | None
    total_cents: int
    cancel_reason: str | None
    refusal_reason: str | None
    claim: t.Claim | None
    rejected_events: int
    redispatch_suggestion: t.RedispatchSuggestion | None
    source: str | None = strawberry.field(description="redis, or log when rebuilt from the order-event log")
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="The current driver (null before the dispatch).")
    def driver(self) -> Driver | None:
        driver_id = driver_id_of(self.doc)
        if driver_id is None:
            return None
        return Driver(driver_id=driver_id, info=t.driver_info(self.doc["driverInfo"]), order=self.doc)

    @strawberry.field(description="The order's open alerts.")
    async def alerts(self, info: Info) -> list[Alert]:
        reads, who = _ctx(info)
        return [alert_of(a) for a in await _read(reads.alerts_of, who, self.doc)]

    @strawberry.field(description="The driver's GPS track from the dispatch to the delivery or now (not for "
                                  "warehouse staff).")
    async def track(self, info: Info, limit: int = 1000) -> t.Track | None:
        reads, who = _ctx(info)
        return t.track(await _read(reads.track_of, who, self.doc, limit))


def order_of(doc: dict[str, Any]) -> Order:
    c = t.camel
    plain = {"order_id", "version", "customer_id", "warehouse_id", "updated_at", "eta", "eta_updated_at",
             "eta_source", "late_risk", "short_lines", "dispatch_count", "total_cents", "cancel_reason",
             "refusal_reason", "rejected_events", "source"}
    return Order(**{n: doc.get(c(n)) for n in plain}, status=t.OrderStatus(doc["status"]), lines=t.lines(doc),
                 stages=t.stages(doc), delivery_window=t.from_view(t.TimeWindow, doc["deliveryWindow"]),
                 destination=t.from_view(t.GeoPoint, doc.get("destination")),
                 exception=t.from_view(t.OrderException, doc.get("exception")),
                 signature=t.from_view(t.Signature, doc.get("signature")),
                 payment=t.from_view(t.Payment, doc.get("payment")),
                 claim=t.from_view(t.Claim, doc.get("claim")),
                 redispatch_suggestion=t.redispatch(doc.get("redispatchSuggestion")), doc=doc)


@strawberry.type(description="An alert (late delivery, shortage, cold chain, ...); location is null for "
                             "warehouse staff.")
class Alert:
    alert_id: str
    rule_id: str
    rule_version: int
    severity: str
    status: str
    order_id: str | None
    driver_id: str | None
    vehicle_id: str | None
    warehouse_id: str | None
    customer_id: str | None
    opened_at: str
    updated_at: str
    resolved_at: str | None
    occurrences: int
    message: str
    evidence: list[t.Entry]
    location: t.GeoPoint | None
    audience: list[str]

    @strawberry.field(description="The order the alert is about (same access as the order; null for a "
                                  "device's alert).")
    async def order(self, info: Info) -> Order | None:
        if not self.order_id:
            return None
        reads, who = _ctx(info)
        return order_of(await _read(reads.order, who, self.order_id))


def alert_of(a: dict[str, Any]) -> Alert:
    loc = a.get("location")
    return Alert(alert_id=a["alert_id"], rule_id=a["rule_id"], rule_version=a["rule_version"],
                 severity=str(a["severity"]), status=str(a["status"]), order_id=a.get("order_id"),
                 driver_id=a.get("driver_id"), vehicle_id=a.get("vehicle_id"), warehouse_id=a.get("warehouse_id"),
                 customer_id=a.get("customer_id"), opened_at=iso(a["opened_at"]) or "",
                 updated_at=iso(a["updated_at"]) or "", resolved_at=iso(a.get("resolved_at")),
                 occurrences=a["occurrences"], message=a["message"], evidence=t.entries(a.get("evidence")),
                 location=None if loc is None else t.GeoPoint(lat=loc["lat"], lng=loc["lng"]),
                 audience=[str(r) for r in a.get("audience") or []])


@strawberry.type(description="A page of orders in id order; give nextCursor as after for the next one.")
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


@strawberry.type
class Query:
    @strawberry.field(description="One order (Redis first, rebuilt from the log when Redis lacks it).")
    async def order(self, info: Info, id: str) -> Order | None:
        reads, who = _ctx(info)
        return order_of(await _read(reads.order, who, id))

    @strawberry.field(description="Orders by status, customer, driver and/or warehouse (the indexes intersected), "
                                  "first at most 200, after = the previous page's nextCursor.")
    async def orders(self, info: Info, status: t.OrderStatus | None = None, customer: str | None = None,
                     driver: str | None = None, warehouse: str | None = None, first: int = 50,
                     after: str | None = None) -> OrderPage | None:
        reads, who = _ctx(info)
        page = await _read(reads.orders, who, status=status.value if status else None, customer=customer,
                           driver=driver, warehouse=warehouse, cursor=after, limit=first)
        return OrderPage(orders=[order_of(d) for d in page["orders"]], next_cursor=page["nextCursor"])

    @strawberry.field(description="Open (or all) alerts, newest first: operators and customer service.")
    async def alerts(self, info: Info, open: bool = True, limit: int = 100) -> list[Alert] | None:
        reads, who = _ctx(info)
        return [alert_of(a) for a in await _read(reads.alerts, who, open_only=open, limit=limit)]


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Log bugs with their stack; denials, bad input and rejected queries are answers, not faults."""
        bugs = [e for e in errors if e.original_error is not None and not isinstance(e.original_error, GraphQLError)
                and not isinstance(e.original_error, ReadError)]
        super().process_errors(bugs, execution_context)
        for e in errors:
            if e not in bugs:
                log.info("graphql: %s (path %s)", e.message, e.path)


schema = _Schema(query=Query, extensions=[lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
                                          lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
                                          lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS)])


def graphql_router(reads: Reads, caller: Callable[..., Principal]) -> GraphQLRouter:
    """``/graphql``, authenticated by ``caller`` (REST's bearer-token dependency: 401 without a valid token)."""

    async def context(who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
        return {"reads": reads, "who": who}

    return GraphQLRouter(schema, path="/graphql", graphql_ide=None, allow_queries_via_get=False,
                         context_getter=context, tags=["graphql"])
