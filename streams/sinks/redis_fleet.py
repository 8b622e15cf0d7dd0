"""The fleet view and re-dispatch suggestions in Redis.

* ``<prefix>:fleet:state`` = orjson of the fleet state (``projections.fleet``: each driver's two newest
  statuses, pending requests, recent decisions, applied offsets): one key, since the whole fleet is
  one state;
* ``<prefix>:redispatch:<order_id>`` = the latest ``RedispatchSuggestion`` of the order as JSON (a week);
* ``<prefix>:redispatch:recent`` = sorted set of order ids scored by decision time (the last 1,000).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from projections.fleet import driver_load

WEEK_S = 7 * 86_400
RECENT = 1_000


class RedisFleet:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self.client = client
        self._p = prefix

    def state_key(self) -> str:
        return f"{self._p}:fleet:state"

    def load(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raw = self.client.get(self.state_key())
        return {} if raw is None else {key: orjson.loads(raw) for key in keys}

    def save(self, states: Iterable[tuple[str, dict[str, Any]]], pipe: Any) -> None:
        for _, state in states:  # one key: the fleet
            pipe.set(self.state_key(), orjson.dumps(state))

    def driver_load(self, driver_id: str) -> dict[str, Any] | None:
        """The driver's load as of their newest status (``projections.fleet.driver_load``), or None."""
        raw = self.client.get(self.state_key())
        return None if raw is None else driver_load(orjson.loads(raw), driver_id)

    def suggestion_key(self, order_id: str) -> str:
        return f"{self._p}:redispatch:{order_id}"

    def save_suggestions(self, suggestions: Iterable[dict[str, Any]], pipe: Any) -> None:
        recent = f"{self._p}:redispatch:recent"
        wrote = False
        for s in suggestions:
            pipe.set(self.suggestion_key(s["order_id"]), orjson.dumps(s), ex=WEEK_S)
            pipe.zadd(recent, {s["order_id"]: s["decided_at"]})
            wrote = True
        if wrote:
            pipe.zremrangebyrank(recent, 0, -RECENT - 1)

    def suggestion(self, order_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.suggestion_key(order_id))
        return None if raw is None else orjson.loads(raw)

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        ids = [m.decode() for m in self.client.zrevrange(f"{self._p}:redispatch:recent", 0, limit - 1)]
        if not ids:
            return []
        raw = self.client.mget([self.suggestion_key(i) for i in ids])
        return [orjson.loads(r) for r in raw if r is not None]
