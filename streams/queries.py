"""Read side for the CLI (and the API): one order, order lists, progress. Synchronous Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config.settings import Settings
from projections.order_status import OrderStatus
from projections.order_view import with_live_position
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
    """The order's public view with the driver's live GPS position merged in."""
    with _client(settings) as r:
        view = RedisOrderStore(r, settings.redis_prefix).view(order_id)
        if view is None:
            return None
        driver = (view.get("driverInfo") or {}).get("driverId")
        position = RedisDriverPositions(r, settings.redis_prefix).get(driver) if driver else None
        return with_live_position(view, position)


def order_ids(settings: Settings, **by: str | None) -> set[str]:
    with _client(settings) as r:
        return RedisOrderStore(r, settings.redis_prefix).order_ids(**by)


def progress(settings: Settings) -> dict[str, Any]:
    """Worker counters and orders per status, as the live progress display shows them."""
    p = settings.redis_prefix
    with _client(settings) as r:
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(f"{p}:stats:orders")
        pipe.hgetall(f"{p}:stats:telemetry")
        for status in OrderStatus:
            pipe.scard(f"{p}:orders:by-status:{status.value}")
        res = pipe.execute()

    def ints(h: dict[bytes, bytes]) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in h.items()}

    return {"orders": ints(res[0]), "telemetry": ints(res[1]),
            "by_status": {s.value: n for s, n in zip(OrderStatus, res[2:], strict=True) if n}}
