"""Alerts in Redis: the alert agent's state and the alert views people query.

Keys (prefix ``kuailv``, ``KUAILV_REDIS_PREFIX``):

=========================================  ======  ===========================================
``{p}:alert-state:{order|device}:{id}``    string  the alert fold's state, JSON (not a contract)
``{p}:alert-timers:{topic}:{partition}``   zset    member = state key, score = its next timer due
``{p}:alert-watermarks``                   hash    ``topic:partition`` -> event-time watermark (ms)
``{p}:alert:{alert_id}``                   string  the alert's latest record, JSON
``{p}:alerts:open``                        zset    open alert ids, score = opened_at
``{p}:alerts:all``                         zset    every alert id, score = updated_at
``{p}:alerts:order:{order_id}``            hash    the order's OPEN alerts: alert id -> JSON
=========================================  ======  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson


class RedisAlerts:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self.client = client
        self._p = prefix

    # ---------------------------------------------------------------- the agent's state
    def state_key(self, key: str) -> str:
        return f"{self._p}:alert-state:{key}"

    def load(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raw = self.client.mget([self.state_key(k) for k in keys])
        return {k: orjson.loads(v) for k, v in zip(keys, raw, strict=True) if v is not None}

    def save(self, states: Iterable[tuple[str, dict[str, Any]]], pipe: Any) -> None:
        mapping = {self.state_key(key): orjson.dumps(state) for key, state in states}
        if mapping:
            pipe.mset(mapping)

    # ---------------------------------------------------------------- what people read
    def publish(self, alerts: Iterable[Mapping[str, Any]], pipe: Any) -> None:
        p = self._p
        for a in alerts:
            aid, body = a["alert_id"], orjson.dumps(a)
            pipe.set(f"{p}:alert:{aid}", body)
            pipe.zadd(f"{p}:alerts:all", {aid: a["updated_at"]})
            order = a.get("order_id")
            if a["status"] == "OPEN":
                pipe.zadd(f"{p}:alerts:open", {aid: a["opened_at"]})
                if order:
                    pipe.hset(f"{p}:alerts:order:{order}", aid, body)
            else:
                pipe.zrem(f"{p}:alerts:open", aid)
                if order:
                    pipe.hdel(f"{p}:alerts:order:{order}", aid)

    def order_alerts(self, order_id: str) -> list[dict[str, Any]]:
        return sorted((orjson.loads(v) for v in self.client.hvals(f"{self._p}:alerts:order:{order_id}")),
                      key=lambda a: (a["opened_at"], a["alert_id"]))

    def listing(self, *, open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: open alerts by opened_at, or every alert by last change."""
        key = f"{self._p}:alerts:{'open' if open_only else 'all'}"
        ids = [i.decode() for i in self.client.zrevrange(key, 0, limit - 1)]
        if not ids:
            return []
        bodies = self.client.mget([f"{self._p}:alert:{i}" for i in ids])
        return [orjson.loads(b) for b in bodies if b is not None]
