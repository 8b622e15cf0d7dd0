"""Read side for the CLI (and the API): one order, order lists, progress. Synchronous Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config.settings import Settings
from projections.order_status import OrderStatus
from projections.order_view import with_live_eta, with_live_position, with_open_alerts
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_geofences import RedisGeofenceStates
from streams.sinks.redis_orders import RedisOrderStore
from streams.sinks.redis_positions import RedisDriverPositions


@contextmanager
def _client(settings: Settings) -> Iterator[Any]:
    import redis

    r = redis.Redis.from_url(settings.redis_url, decode_responses=False)
    try:
        yield r
    finally:
        r.close()


def order_document(settings: Settings, order_id: str) -> dict[str, Any] | None:
    """The order's public view with the driver's live GPS position, the latest ETA from the van's GPS and
    the order's open alerts merged in (all three are derived downstream of the order projection)."""
    with _client(settings) as r:
        view = RedisOrderStore(r, settings.redis_prefix).view(order_id)
        if view is None:
            return None
        driver = (view.get("driverInfo") or {}).get("driverId")
        position = RedisDriverPositions(r, settings.redis_prefix).get(driver) if driver else None
        alerts = RedisAlerts(r, settings.redis_prefix).order_alerts(order_id)
        eta = RedisGeofenceStates(r, settings.redis_prefix).eta(order_id)
        return with_open_alerts(with_live_eta(with_live_position(view, position), eta), alerts)


def order_ids(settings: Settings, **by: str | None) -> set[str]:
    with _client(settings) as r:
        return RedisOrderStore(r, settings.redis_prefix).order_ids(**by)


def progress(settings: Settings) -> dict[str, Any]:
    """Worker counters and orders per status, as the live progress display shows them."""
    p = settings.redis_prefix
    with _client(settings) as r:
        pipe = r.pipeline(transaction=False)
        for kind in ("orders", "telemetry", "geofences", "alerts"):
            pipe.hgetall(f"{p}:stats:{kind}")
        pipe.zcard(f"{p}:alerts:open")
        for status in OrderStatus:
            pipe.scard(f"{p}:orders:by-status:{status.value}")
        res = pipe.execute()

    def ints(h: dict[bytes, bytes]) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in h.items()}

    return {"orders": ints(res[0]), "telemetry": ints(res[1]), "geofences": ints(res[2]), "alerts": ints(res[3]),
            "open_alerts": res[4], "by_status": {s.value: n for s, n in zip(OrderStatus, res[5:], strict=True) if n}}


def alert_listing(settings: Settings, *, order_id: str | None = None, open_only: bool = False,
                  limit: int = 100) -> list[dict[str, Any]]:
    """An order's open alerts, or the newest alerts (open ones only with ``open_only``)."""
    with _client(settings) as r:
        alerts = RedisAlerts(r, settings.redis_prefix)
        return alerts.order_alerts(order_id) if order_id else alerts.listing(open_only=open_only, limit=limit)


def alert_row(a: dict[str, Any]) -> str:
    """One line per alert for a terminal: when, state, severity, rule, subject, message."""
    when = time.strftime("%m-%d %H:%M", time.gmtime(a["opened_at"] / 1000))
    state = a["status"] if a["status"] == "OPEN" else "resolved " + time.strftime(
        "%H:%M", time.gmtime(a["resolved_at"] / 1000))
    return f"{when}Z {state:<14} {a['severity']:<8} {a['alert_id']:<48} {a['message']}"
