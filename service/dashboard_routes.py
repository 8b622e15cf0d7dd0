"""The operations dashboard's endpoints (issue 11; docs/api.md "Dashboard endpoints"): ``/dashboard/*`` reads and
``POST /alerts/{alert_id}/ack``.

Same bearer tokens (``caller``) and the one policy (``service.policy``: 403 with its reason) as the rest of the
API; the reads live in ``service.dashboard_reads`` (Redis), ``service.dashboard_kpis`` (Redis + InfluxDB) and
``service.dashboard_pipeline`` (Kafka), their errors are the ``service.reads`` ones (the app turns them into
HTTP answers). An acknowledgement goes into the audit trail like a command, whatever its outcome.

No ``from __future__ import annotations`` here: FastAPI resolves the handlers' annotations at run time.
"""

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from config.settings import Settings
from service import dashboard_kpis, dashboard_models
from service.audit_trail import ApiAudit
from service.auth import Principal
from service.dashboard_pipeline import OffsetSamples, pipeline
from service.dashboard_reads import DashboardReads, TtlCache
from service.models import READ_ERRORS
from service.policy import may_watch_operations
from service.reads import Denied, Invalid, NotFound, allow

PIPELINE_CACHE_S = 3.0
KpiDimension = Annotated[str, Query(pattern="^(city|warehouse|merchant|driver)$")]


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def dashboard_router(settings: Settings, caller: Callable[..., Principal], audit: ApiAudit,
                     clock_ms: Callable[[], int] = _wall_clock_ms) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    Caller = Annotated[Principal, Depends(caller)]
    reads = DashboardReads(settings, clock_ms)
    samples = OffsetSamples()
    cache = TtlCache()
    read: dict[str, Any] = {"responses": READ_ERRORS}

    @router.get("/dashboard/funnel", response_model=dashboard_models.Funnel, **read)
    def funnel(who: Caller) -> dict[str, Any]:
        """Orders per status (as kuailv stats counts them) and the median / p90 time spent in each status."""
        return reads.funnel(who)

    @router.get("/dashboard/fleet", response_model=dashboard_models.Fleet, **read)
    def fleet(who: Caller) -> dict[str, Any]:
        """Every driver's newest GPS fix with the van's load and cold-chain state."""
        return reads.fleet(who)

    @router.get("/dashboard/map-orders", response_model=dashboard_models.MapOrders, **read)
    def map_orders(who: Caller, active: bool = True) -> dict[str, Any]:
        """Order markers at their destinations (active ones, or all), newest first, at most 5,000."""
        return reads.map_orders(who, active)

    @router.get("/dashboard/warehouses", response_model=dashboard_models.Warehouses, **read)
    def warehouses(who: Caller) -> dict[str, Any]:
        """The warehouses and van depots of the fence file (KUAILV_FENCES)."""
        return reads.warehouses(who)

    @router.get("/dashboard/kpis", response_model=dashboard_models.Kpis, **read)
    def kpis(who: Caller, dimension: KpiDimension = "city", id: str | None = None,
             days: Annotated[int, Query(ge=1, le=dashboard_kpis.MAX_DAYS)] = 7) -> dict[str, Any]:
        """A KPI window's figures of today and its intraday series (kpi_intraday) over the last days."""
        return dashboard_kpis.kpis(settings, who, dimension, id, days, clock_ms())

    @router.get("/dashboard/pipeline", response_model=dashboard_models.Pipeline, **read)
    def pipeline_health(who: Caller) -> dict[str, Any]:
        """Input topics' events/s, consumer lag of the worker groups, dead letters, open alerts."""
        allow(may_watch_operations(who, "the pipeline's health"))
        return cache.get("pipeline", PIPELINE_CACHE_S, lambda: pipeline(settings, samples, clock_ms()))

    @router.get("/dashboard/stock", response_model=dashboard_models.Stock, **read)
    def stock(who: Caller, warehouse: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
        """A warehouse's stock levels and replenishment suggestions (docs/stock.md)."""
        return reads.stock(who, warehouse)

    @router.get("/dashboard/merchant-stock", response_model=dashboard_models.MerchantStock, **read)
    def merchant_stock(who: Caller, customer: Annotated[str | None, Query(min_length=1)] = None) -> dict[str, Any]:
        """Low stock of the SKUs a customer orders, in the warehouses serving them, and their orders' short lines."""
        customer = customer or (who.tenant if who.role in ("merchant", "customer") else None)
        if customer is None:
            raise Invalid("give customer (a customer id)")
        return reads.merchant_stock(who, customer)

    @router.post("/alerts/{alert_id:path}/ack", tags=["alerts"], response_model=dashboard_models.Ack, **read)
    def acknowledge(alert_id: str, who: Caller,
                    body: Annotated[dashboard_models.AckRequest | None, Body()] = None) -> dict[str, Any]:
        """Acknowledge an open alert (who handles it; it stays open): operators and customer service."""
        note = body.note if body is not None else None
        try:
            ack = reads.acknowledge(who, alert_id, note)
        except (Denied, NotFound) as exc:
            audit.record(who, "alert.ack", alert_id, {"outcome": "denied" if isinstance(exc, Denied) else "not_found",
                                                      "reason": str(exc)})
            raise
        audit.record(who, "alert.ack", alert_id, {"outcome": "accepted", "noted": bool(note)})
        return ack

    return router
