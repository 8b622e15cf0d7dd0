"""The query API (FastAPI on uvicorn): ``kuailv serve``, and beside the workers in ``make run``.

FastAPI because it is the kept ASGI framework with typed parameters, validation errors that name
the field (422), and the OpenAPI document generated from the code (``/openapi.json``). Its
Swagger page loads from a CDN, which this product must not do at run time, so ``/docs`` is a
plain HTML index of the OpenAPI document, rendered here.

Every endpoint authenticates (``service.auth``: a bearer JWT) and asks ``service.policy``: 401
without a valid token, 403 with the policy's reason for another tenant's data, 404 only for an
order that is neither in Redis nor on the log. Handlers are plain functions (run in the server's
thread pool): the reads are synchronous Redis and, on a miss, Kafka.
"""

import html
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from config.settings import Settings
from projections.order_status import OrderStatus
from service import models, orders
from service.audit_trail import ApiAudit
from service.auth import AuthError, Principal, verify
from service.dashboard_routes import dashboard_router
from service.graphql_api import graphql_router
from service.models import READ_ERRORS
from service.policy import Access, command_access, may_erase
from service.reads import MAX_ALERTS, ReadError, Reads
from service.track import MAX_POINTS
from service.webhook_routes import webhook_router

log = logging.getLogger(__name__)


class Point(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


class ExceptionReport(BaseModel):
    """A driver reports why the delivery cannot go on (seed scenario 2)."""

    reason_code: str = Field(pattern="^(TRAFFIC_ACCIDENT|VEHICLE_BREAKDOWN|CUSTOMER_UNREACHABLE|ADDRESS_NOT_FOUND|"
                                     "GOODS_DAMAGED|COLD_CHAIN_FAILURE|OTHER)$")
    description: str = Field(min_length=1, max_length=500)
    location: Point


class DeliveredLine(BaseModel):
    line_no: int = Field(ge=1)
    delivered_quantity: float = Field(ge=0)


class DeliveryConfirmation(BaseModel):
    """The driver confirms the signing, or the customer confirms receipt, with the signature's reference."""

    receiver_name: str = Field(min_length=1, max_length=100)
    signature_ref: str = Field(min_length=1, max_length=300)
    location: Point
    photo_ref: str | None = None
    lines: list[DeliveredLine] | None = None  # default: every line as picked


def _deny(access: Access) -> None:
    if not access.allowed:
        raise HTTPException(status_code=403, detail=access.reason)


def create_app(settings: Settings, codec: Any) -> FastAPI:
    app = FastAPI(title="Kuailv order pipeline API", version="1",
                  description="Orders, alerts and driver positions from the stream projections, by role.",
                  docs_url=None, redoc_url=None)

    def caller(authorization: Annotated[str | None, Header()] = None) -> Principal:
        try:
            return verify(settings.api_secret, authorization)
        except AuthError as exc:
            raise HTTPException(status_code=401, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc

    Caller = Annotated[Principal, Depends(caller)]
    app.include_router(webhook_router(settings, caller, ApiAudit(settings)))  # webhook subscriptions (operators)
    app.include_router(dashboard_router(settings, caller, ApiAudit(settings)))  # /dashboard/*, alert acks (issue 11)
    reads = Reads(settings, codec)

    @app.exception_handler(ReadError)
    def read_error(_: Request, exc: ReadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> dict[str, Any]:
        """Readiness: Redis and Kafka reachable (503 naming which is not)."""
        checks = _ready(settings)
        if not all(ok for ok, _ in checks.values()):
            raise HTTPException(status_code=503, detail={k: why for k, (ok, why) in checks.items() if not ok})
        return {"status": "ready", "checks": {k: "ok" for k in checks}}

    read = {"responses": READ_ERRORS, "response_model_exclude_unset": True}

    @app.get("/orders/{order_id}", tags=["orders"], response_model=models.Order, **read)
    def get_order(order_id: str, who: Caller) -> dict[str, Any]:
        """The order as the seed's scenario 1 shows it (status, driver, items, stages, ETA, alerts)."""
        return reads.order(who, order_id)

    @app.get("/orders", tags=["orders"], response_model=models.OrderList, **read)
    def list_orders(who: Caller, status: OrderStatus | None = None, customer: str | None = None,
                    driver: str | None = None, warehouse: str | None = None, cursor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=orders.MAX_PAGE)] = 50) -> dict[str, Any]:
        """Orders by status, customer, driver and/or warehouse (the indexes intersected), in id order; nextCursor
        pages on."""
        return reads.orders(who, status=status.value if status else None, customer=customer, driver=driver,
                            warehouse=warehouse, cursor=cursor, limit=limit)

    @app.get("/orders/{order_id}/alerts", tags=["alerts"], response_model=models.Alerts, **read)
    def order_alerts(order_id: str, who: Caller) -> dict[str, Any]:
        """The order's open alerts (same access as the order)."""
        return {"alerts": reads.order_alerts(who, order_id)}

    @app.get("/orders/{order_id}/track", tags=["orders"], response_model=models.Track, **read)
    def order_track(order_id: str, who: Caller,
                    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000) -> dict[str, Any]:
        """The order's GPS track (its driver, dispatch to delivery or now), evenly thinned to limit points."""
        return reads.track(who, order_id, limit)

    @app.get("/alerts", tags=["alerts"], response_model=models.Alerts, **read)
    def alerts(who: Caller, open: bool = True,
               limit: Annotated[int, Query(ge=1, le=MAX_ALERTS)] = 100) -> dict[str, Any]:
        """Open (or all) alerts, newest first: operators and customer service."""
        return {"alerts": reads.alerts(who, open_only=open, limit=limit)}

    @app.get("/drivers/{driver_id}/position", tags=["drivers"], response_model=models.DriverPosition, **read)
    def driver_position(driver_id: str, who: Caller) -> dict[str, Any]:
        """The driver's newest GPS fix and what the van carries (weight, orders on board)."""
        return reads.driver_position(who, driver_id)

    app.include_router(graphql_router(reads, caller))

    commands = _Commands(settings)
    audit = ApiAudit(settings)

    def command(who: Principal, order_id: str, name: str, audited: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Authorise against the aggregate's own view (the projection may lag), then let the aggregate decide.
        Every attempt is in the audit trail with its outcome (``audited``: the details worth keeping, no
        personal data)."""
        from commands.errors import CommandRejected, InvalidCommand

        view = commands.view(order_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"order {order_id} does not exist")
        from projections.order_view import public_view

        def outcome(result: str, **more: Any) -> None:
            audit.record(who, f"order.{name}", order_id, {**audited, "outcome": result, **more})

        access = command_access(who, name, public_view(view))
        if not access.allowed:
            outcome("denied", reason=access.reason)
        _deny(access)
        producer = f"api:{who.role}:{who.subject}"
        try:
            order = commands.run(name, order_id, producer=producer, **kwargs)
        except CommandRejected as exc:  # the state machine said no: the aggregate's reason
            outcome("rejected", reason=str(exc))
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except InvalidCommand as exc:
            outcome("invalid", reason=str(exc))
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        after = order.view
        outcome("accepted", version=after["version"], status=after["status"])
        return {"orderId": order_id, "status": after["status"], "version": after["version"]}

    @app.post("/orders/{order_id}/exceptions", status_code=202, tags=["commands"])
    def report_exception(order_id: str, body: ExceptionReport, who: Caller) -> dict[str, Any]:
        """The driver reports an exception (the order goes to EXCEPTION_HANDLING)."""
        view = commands.view(order_id) or {}
        driver = (view.get("driver") or {}).get("driver_id") or who.tenant or who.subject
        return command(who, order_id, "report_exception", {"reason_code": body.reason_code},
                       reason_code=body.reason_code, description=body.description, driver_id=driver,
                       location=body.location.model_dump())

    @app.post("/orders/{order_id}/delivery", status_code=202, tags=["commands"])
    def confirm_delivery(order_id: str, body: DeliveryConfirmation, who: Caller) -> dict[str, Any]:
        """The driver confirms the signing, or the customer confirms receipt (OrderDelivered)."""
        view = commands.view(order_id) or {}
        lines = ([ln.model_dump() for ln in body.lines] if body.lines is not None else
                 [{"line_no": ln["line_no"], "delivered_quantity": ln.get("picked") or ln["ordered"]}
                  for ln in view.get("lines") or []])
        signing = {"signature_ref": body.signature_ref, "photo_ref": body.photo_ref,
                   "location": body.location.model_dump(), "lines": lines}
        return command(who, order_id, "deliver", signing, receiver_name=body.receiver_name, **signing)

    @app.post("/customers/{customer_id}/erasure", status_code=202, tags=["privacy"],
              response_model=models.ErasureReport, responses=READ_ERRORS)
    def erase(customer_id: str, who: Caller) -> dict[str, Any]:
        """Erase the customer's personal data (crypto-shredding: their keys destroyed, current views rewritten
        without it, the erasure in the audit trail). Orders, alerts and KPIs stay."""
        from audit.actions import record_action
        from privacy.erasure import erase_customer

        _deny(may_erase(who, customer_id))
        report = erase_customer(settings, customer_id, keys=reads.reveal.keys(), codec=codec,
                                actor=(who.subject, who.role),
                                audit=lambda *entry: record_action(audit.store(), *entry))
        return report.as_dict()

    from service.live_routes import live_router
    from service.observability import RequestMetrics, metrics_router

    app.include_router(live_router(settings, codec))
    app.include_router(metrics_router(settings))
    app.add_middleware(RequestMetrics)
    from service.pages import mount_pages

    mount_pages(app, settings)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return _docs_page(app.openapi())

    return app


class _Commands:
    """The command side (``commands.OrderService``), opened at the first command, never at import."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Any = None

    def service(self) -> Any:
        if self._service is None:
            from commands.order_service import OrderService
            from service.reveal import process_keystore

            self._service = OrderService.from_url(self.settings.eventstore_url,
                                                  keys=process_keystore(self.settings))  # one cache per process
        return self._service

    def view(self, order_id: str) -> dict[str, Any] | None:
        return self.service().view(order_id)

    def run(self, name: str, order_id: str, **kwargs: Any) -> Any:
        import time

        return self.service().execute(name, order_id, at=int(time.time() * 1000), **kwargs)


def _ready(settings: Settings) -> dict[str, tuple[bool, str]]:
    import redis
    from confluent_kafka.admin import AdminClient

    from config.kafka_client import client_config

    checks: dict[str, tuple[bool, str]] = {}
    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
        checks["redis"] = (True, "")
    except Exception as exc:
        checks["redis"] = (False, f"redis {settings.redis_url}: {exc}")
    try:
        AdminClient(client_config(settings.kafka_bootstrap)).list_topics(timeout=2)
        checks["kafka"] = (True, "")
    except Exception as exc:
        checks["kafka"] = (False, f"kafka {settings.kafka_bootstrap}: {exc}")
    return checks


_NOT_IN_DOCSTRINGS = {"/graphql": "GraphQL (Strawberry): an order with its driver, lines, alerts, track and ETA in "
                                  "one query; same tokens and policy; depth, alias and token limits (docs/api.md)."}


def _docs_page(spec: dict[str, Any]) -> str:
    rows = []
    for path, ops in sorted(spec.get("paths", {}).items()):
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p.get("in") != "header")
            what = _NOT_IN_DOCSTRINGS.get(path) or (op.get("description") or op.get("summary", "")).strip()
            what = what.splitlines()[0]
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(params)}</td><td>{html.escape(what)}</td></tr>")
    return ("<!doctype html><meta charset=utf-8><title>Kuailv API</title>"
            f"<h1>{html.escape(spec['info']['title'])}</h1><p>{html.escape(spec['info'].get('description', ''))}</p>"
            "<p>Every endpoint but <code>/healthz</code> and <code>/readyz</code> needs "
            "<code>Authorization: Bearer &lt;token&gt;</code> (<code>kuailv token</code>); the roles are in "
            "docs/api.md. "
            "The machine-readable document: <a href=/openapi.json>/openapi.json</a>.</p>"
            "<p>Not in the OpenAPI document: <code>GET /ws</code>, the WebSocket live feed (subscribe by order, "
            "customer, driver, warehouse or all alerts; resume with a cursor: docs/live.md), and "
            "<code>GET /metrics</code>, Prometheus metrics (no token).</p>"
            "<table border=1 cellpadding=4><tr><th>method</th><th>path</th><th>parameters</th><th>summary</th></tr>"
            + "".join(rows) + "</table>")
