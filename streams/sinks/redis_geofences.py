"""Each driver's geofence state in Redis: ``<prefix>:geofence:<driver_id>`` = orjson of the state;
and each order's tracking record (latest ETA and the stage times of its dispatch):
``<prefix>:eta:<order_id>`` = the latest ``OrderEta`` record as JSON.

The state is what ``projections.geofence_step`` folds (buffered pings, fences the driver is in,
orders on the van, last applied offset per source partition). It is written after the batch's
transitions are flushed to Kafka, with one pipeline per batch, and read back when the worker
has no cached state for a driver (after a restart or a rebalance).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson


class RedisGeofenceStates:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self.client = client
        self._p = prefix

    def key(self, driver_id: str) -> str:
        return f"{self._p}:geofence:{driver_id}"

    def load(self, drivers: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not drivers:
            return {}
        raw = self.client.mget([self.key(d) for d in drivers])
        return {d: orjson.loads(v) for d, v in zip(drivers, raw, strict=True) if v is not None}

    def save(self, states: Iterable[tuple[str, dict[str, Any]]], pipe: Any) -> None:
        mapping = {self.key(d): orjson.dumps(s) for d, s in states}
        if mapping:
            pipe.mset(mapping)

    def eta_key(self, order_id: str) -> str:
        return f"{self._p}:eta:{order_id}"

    def save_etas(self, etas: Iterable[dict[str, Any]], pipe: Any) -> None:
        """The latest ``OrderEta`` per order (the batch's are in event-time order per driver; an order is on
        one van at a time), as JSON, kept a day after its last update."""
        latest = {e["order_id"]: e for e in etas}
        for order_id, eta in latest.items():
            pipe.set(self.eta_key(order_id), orjson.dumps(eta), ex=86_400)

    def eta(self, order_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.eta_key(order_id))
        return None if raw is None else orjson.loads(raw)
