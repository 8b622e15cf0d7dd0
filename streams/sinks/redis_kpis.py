"""The KPI stages' states and the KPI figures in Redis (``docs/kpis.md``, ``docs/contracts.md`` section 6).

* ``<prefix>:kpi:state:<stage>:<key>`` = orjson of a stage's state (``projections.kpi_step``): per exposure
  alert (``kpi-exposures``), per order (``kpi-orders``), per window (``kpis``); kept ``STATE_TTL_S`` after
  the last change (a window's orders arrive within days of its day; a replay rebuilds them);
* ``<prefix>:kpi:<dimension>:<id>:<day>`` = hash of the window's ``KpiFigures``, one field per figure, each
  value JSON (``null`` for an undefined rate);
* ``<prefix>:kpi:index:<dimension>:<day>`` = set of the ids with figures that day (for ``kuailv kpis``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

STATE_TTL_S = 90 * 86_400


class RedisKpis:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self.client = client
        self._p = prefix

    def state_key(self, stage: str, key: str) -> str:
        return f"{self._p}:kpi:state:{stage}:{key}"

    def load(self, stage: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        raw = self.client.mget([self.state_key(stage, k) for k in keys])
        return {k: orjson.loads(v) for k, v in zip(keys, raw, strict=True) if v is not None}

    def save(self, stage: str, states: Iterable[tuple[str, dict[str, Any]]], pipe: Any) -> None:
        for key, state in states:
            pipe.set(self.state_key(stage, key), orjson.dumps(state), ex=STATE_TTL_S)

    def figures_key(self, dimension: str, dimension_id: str, day: str) -> str:
        return f"{self._p}:kpi:{dimension}:{dimension_id}:{day}"

    def index_key(self, dimension: str, day: str) -> str:
        return f"{self._p}:kpi:index:{dimension}:{day}"

    def save_figures(self, figures: Iterable[dict[str, Any]], pipe: Any) -> None:
        """The latest figures of each window (a batch may hold several of one window: the last wins)."""
        latest = {f["window_key"]: f for f in figures}
        for f in latest.values():
            key = self.figures_key(f["dimension"], f["dimension_id"], f["day"])
            pipe.hset(key, mapping={name: orjson.dumps(value) for name, value in f.items()})
            pipe.expire(key, STATE_TTL_S)
            pipe.sadd(self.index_key(f["dimension"], f["day"]), f["dimension_id"])
            pipe.expire(self.index_key(f["dimension"], f["day"]), STATE_TTL_S)

    def figures(self, dimension: str, dimension_id: str, day: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(self.figures_key(dimension, dimension_id, day))
        return {k.decode(): orjson.loads(v) for k, v in raw.items()} if raw else None

    def day(self, dimension: str, day: str) -> list[dict[str, Any]]:
        """Every window of ``dimension`` on ``day``, by id."""
        ids = sorted(m.decode() for m in self.client.smembers(self.index_key(dimension, day)))
        found = (self.figures(dimension, i, day) for i in ids)
        return [f for f in found if f is not None]
