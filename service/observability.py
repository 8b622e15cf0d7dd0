"""Request metrics, ``GET /metrics`` (Prometheus text format) and structured JSON logs for the service.

The request metrics are a plain ASGI middleware (not ``BaseHTTPMiddleware``: no extra task per
request), labelled with the route's template (``/orders/{order_id}``), never the raw path, so the
label set stays bounded. Consumer lag of the worker groups is read from Kafka when Prometheus
scrapes, at most once per ``LAG_EVERY_S``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from config.settings import Settings
from service import metrics

LAG_EVERY_S = 10.0
log = logging.getLogger(__name__)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by method, route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            metrics.API_REQUESTS.labels(method, template, str(status[0])).inc()
            metrics.API_LATENCY.labels(method, template).observe(time.perf_counter() - started)


def worker_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The consumer groups and the topics each reads: ``streams.worker``'s agents and the webhook intake."""
    from streams.alert_agent import AlertAgent
    from streams.fleet_agent import FleetAgent
    from streams.geofence_agent import GeofenceAgent
    from streams.order_agent import OrderStateAgent
    from streams.telemetry_agent import TelemetryAgent

    groups: dict[str, tuple[str, ...]] = {}
    for agent in (OrderStateAgent, TelemetryAgent, GeofenceAgent, AlertAgent, FleetAgent):
        group = settings.consumer_group + getattr(agent, "group_suffix", "")
        topics = tuple(settings.topic_renames.get(t, t) for t in agent.topics)
        groups[group] = tuple(dict.fromkeys(groups.get(group, ()) + topics))
    from webhooks.intake import WebhookIntake

    groups[settings.consumer_group + WebhookIntake.group_suffix] = tuple(
        settings.topic_renames.get(t, t) for t in WebhookIntake.topics)
    return groups


def metrics_router(settings: Settings) -> APIRouter:
    router = APIRouter()
    last_lag = [0.0]

    def refresh_lag() -> None:
        from streams.kafka_lag import group_lag

        for group, topics in worker_groups(settings).items():
            try:
                metrics.CONSUMER_LAG.labels(group).set(group_lag(settings.kafka_bootstrap, group, topics,
                                                                 timeout_s=2))
            except Exception as exc:  # a scrape must answer even when Kafka does not
                log.warning("consumer lag of %s not read: %s", group, exc)

    @router.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if time.monotonic() - last_lag[0] > LAG_EVERY_S:
            last_lag[0] = time.monotonic()
            await run_in_threadpool(refresh_lag)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def json_logging(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict: one JSON object per line (python-json-logger) for the service's own logs
    and uvicorn's, with time, level, logger and message; pass extra context with ``extra={...}``."""
    fmt = {"()": "pythonjsonlogger.json.JsonFormatter",
           "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
           "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "service", "webhooks")}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"json": fmt},
            "handlers": {"json": handler}, "loggers": loggers,
            "root": {"handlers": ["json"], "level": level.upper()}}
