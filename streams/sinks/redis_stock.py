"""Stock levels and replenishment suggestions in Redis (``docs/contracts.md`` section 6).

* ``<prefix>:stock-state:<warehouse_id>/<sku>`` = orjson of the key's fold state (``projections.stock``: daily
  demand, recent event ids, plan, open alert, applied offsets): not a contract;
* ``<prefix>:stock:<warehouse_id>`` = hash SKU -> the SKU's level as JSON (``projections.stock.level_view``);
* ``<prefix>:replenishment:<warehouse_id>`` = hash SKU -> the latest ``ReplenishmentSuggestion`` as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from projections.stock import level_view


class RedisStock:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self.client = client
        self._p = prefix

    def state_key(self, key: str) -> str:
        return f"{self._p}:stock-state:{key}"

    def load(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raw = self.client.mget([self.state_key(k) for k in keys])
        return {k: orjson.loads(r) for k, r in zip(keys, raw, strict=True) if r is not None}

    def save(self, states: Iterable[tuple[str, dict[str, Any]]], pipe: Any) -> None:
        """The states and the level views they imply."""
        for key, state in states:
            pipe.set(self.state_key(key), orjson.dumps(state))
            pipe.hset(f"{self._p}:stock:{state['warehouse_id']}", state["sku"], orjson.dumps(level_view(state)))

    def save_suggestions(self, suggestions: Iterable[dict[str, Any]], pipe: Any) -> None:
        for s in suggestions:
            pipe.hset(f"{self._p}:replenishment:{s['warehouse_id']}", s["sku"], orjson.dumps(s))

    def levels(self, warehouse_id: str) -> dict[str, dict[str, Any]]:
        """SKU -> level of one warehouse."""
        raw = self.client.hgetall(f"{self._p}:stock:{warehouse_id}")
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    def suggestions(self, warehouse_id: str) -> dict[str, dict[str, Any]]:
        """SKU -> latest replenishment suggestion of one warehouse."""
        raw = self.client.hgetall(f"{self._p}:replenishment:{warehouse_id}")
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}
