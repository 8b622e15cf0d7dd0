"""Order-state store in Redis: fold state, public view and lookup indexes.

Layout (prefix ``kuailv`` by default)::

    {p}:order:{order_id}            hash  state (fold state JSON), view (public JSON),
                                          applied, pending, status, customer, driver
    {p}:orders:by-status:{STATUS}   set of order ids
    {p}:orders:by-customer:{id}     set of order ids
    {p}:orders:by-driver:{id}       set of order ids (current driver only)

Writes go through one Lua script per order, all in one pipeline per batch. The
script refuses to replace a newer state with an older one (compare applied
version, then pending count), so a worker that lost its partition in a
rebalance cannot roll an order back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

_UPSERT = """
local cur = redis.call('HGET', KEYS[1], 'applied')
if cur then
  local c, n = tonumber(cur), tonumber(ARGV[1])
  local cp = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0')
  if c > n or (c == n and cp > tonumber(ARGV[2])) then return 0 end
end
local old_status = redis.call('HGET', KEYS[1], 'status')
local old_driver = redis.call('HGET', KEYS[1], 'driver')
redis.call('HSET', KEYS[1], 'applied', ARGV[1], 'pending', ARGV[2], 'state', ARGV[3])
if ARGV[4] ~= '' then
  local p, id, status, customer, driver = ARGV[8], ARGV[9], ARGV[5], ARGV[6], ARGV[7]
  redis.call('HSET', KEYS[1], 'view', ARGV[4], 'status', status, 'customer', customer, 'driver', driver)
  if old_status and old_status ~= status then
    redis.call('SREM', p .. ':orders:by-status:' .. old_status, id)
  end
  redis.call('SADD', p .. ':orders:by-status:' .. status, id)
  redis.call('SADD', p .. ':orders:by-customer:' .. customer, id)
  if old_driver and old_driver ~= '' and old_driver ~= driver then
    redis.call('SREM', p .. ':orders:by-driver:' .. old_driver, id)
  end
  if driver ~= '' then redis.call('SADD', p .. ':orders:by-driver:' .. driver, id) end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class OrderWrite:
    order_id: str
    state: dict[str, Any]
    public: dict[str, Any] | None  # public view, None while only pending events exist
    view_changed: bool = True  # publish a projection record (False: only the fold state moved)


class OrderStore(Protocol):
    async def load(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def save(self, writes: Iterable[OrderWrite]) -> int: ...


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (orjson: ~5x faster than json on fold states)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class RedisOrderStore:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self._r = client  # redis.asyncio.Redis
        self._p = prefix
        self._script = client.register_script(_UPSERT)

    def key(self, order_id: str) -> str:
        return f"{self._p}:order:{order_id}"

    async def load(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not order_ids:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for oid in order_ids:
            pipe.hget(self.key(oid), "state")
        raw = await pipe.execute()
        return {oid: orjson.loads(value) for oid, value in zip(order_ids, raw, strict=True) if value is not None}

    async def save(self, writes: Iterable[OrderWrite]) -> int:
        pipe = self._r.pipeline(transaction=False)
        n = 0
        for w in writes:
            public = w.public
            driver = (public.get("driverInfo") or {}).get("driverId", "") if public else ""
            await self._script(
                keys=[self.key(w.order_id)],
                args=[w.state["applied"], len(w.state["pending"]), dumps(w.state),
                      dumps(public) if public else b"", public["status"] if public else "",
                      public["customerId"] if public else "", driver, self._p, w.order_id],
                client=pipe,
            )
            n += 1
        if n:
            await pipe.execute()
        return n

    async def view(self, order_id: str) -> dict[str, Any] | None:
        raw = await self._r.hget(self.key(order_id), "view")
        return None if raw is None else json.loads(raw)

    async def order_ids(self, *, status: str | None = None, customer: str | None = None,
                        driver: str | None = None) -> set[str]:
        if status:
            key = f"{self._p}:orders:by-status:{status}"
        elif customer:
            key = f"{self._p}:orders:by-customer:{customer}"
        elif driver:
            key = f"{self._p}:orders:by-driver:{driver}"
        else:
            raise ValueError("give status, customer or driver")
        return {m.decode() if isinstance(m, bytes) else m for m in await self._r.smembers(key)}
