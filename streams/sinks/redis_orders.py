"""Order-state store in Redis: the fold state, the encoded projection and lookup indexes.

Layout (prefix ``kuailv`` by default)::

    {p}:order:{order_id}            hash  projection (the framed Avro OrderState: the very bytes
                                          published on kuailv.order-state.v1), fold (the rest of the
                                          fold state, JSON), applied, pending, status, customer, driver,
                                          warehouse
    {p}:orders:by-status:{STATUS}   set of order ids
    {p}:orders:by-customer:{id}     set of order ids
    {p}:orders:by-driver:{id}       set of order ids (current driver only)
    {p}:orders:by-warehouse:{id}    set of order ids (the fulfilling warehouse)

A batch's writes are ONE Lua call (``EVALSHA``, packed by hiredis): per order it refuses to
replace a newer state with an older one (compare applied version, then pending count), so a
worker that lost its partition cannot roll an order back, and it touches an index only when
the indexed value changed. The call returns the order ids it refused.

Readers get the public JSON view (``projections.order_view.public_view``) computed from the
projection on read: writes never pay for a shape only readers need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from projections.order_state import State
from projections.order_step import bookkeeping, with_view
from projections.order_view import public_view
from schemas.codec import AvroCodec

_UPSERT_MANY = """
local p = ARGV[1]
local refused = {}
for i = 2, #ARGV, 9 do
  local id, applied, pend = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local k = p .. ':order:' .. id
  local cur = redis.call('HMGET', k, 'applied', 'pending', 'status', 'customer', 'driver', 'warehouse')
  local c = tonumber(cur[1])
  if c and (c > applied or (c == applied and tonumber(cur[2] or '0') > pend)) then
    refused[#refused + 1] = id
  elseif ARGV[i + 4] == '' then
    redis.call('HSET', k, 'applied', ARGV[i + 1], 'pending', ARGV[i + 2], 'fold', ARGV[i + 3])
  else
    local status, customer, driver, warehouse = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    redis.call('HSET', k, 'applied', ARGV[i + 1], 'pending', ARGV[i + 2], 'fold', ARGV[i + 3],
               'projection', ARGV[i + 4], 'status', status, 'customer', customer, 'driver', driver,
               'warehouse', warehouse)
    if cur[3] ~= status then
      if cur[3] then redis.call('SREM', p .. ':orders:by-status:' .. cur[3], id) end
      redis.call('SADD', p .. ':orders:by-status:' .. status, id)
    end
    if cur[4] ~= customer then redis.call('SADD', p .. ':orders:by-customer:' .. customer, id) end
    if cur[5] ~= driver then
      if cur[5] and cur[5] ~= '' then redis.call('SREM', p .. ':orders:by-driver:' .. cur[5], id) end
      if driver ~= '' then redis.call('SADD', p .. ':orders:by-driver:' .. driver, id) end
    end
    if cur[6] ~= warehouse then
      if cur[6] and cur[6] ~= '' then redis.call('SREM', p .. ':orders:by-warehouse:' .. cur[6], id) end
      redis.call('SADD', p .. ':orders:by-warehouse:' .. warehouse, id)
    end
  end
end
return refused
"""


@dataclass(frozen=True, slots=True)
class OrderWrite:
    order_id: str
    state: dict[str, Any]
    projection: bytes | None  # the framed OrderState when the view changed, else None (keep the stored one)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (orjson)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def write_args(w: OrderWrite) -> list[Any]:
    """The nine script arguments of one order."""
    state = w.state
    view = state["view"]
    if w.projection is None or view is None:
        return [w.order_id, state["applied"], len(state["pending"]), dumps(bookkeeping(state)), b"", "", "", "", ""]
    driver = view["driver"]
    return [w.order_id, state["applied"], len(state["pending"]), dumps(bookkeeping(state)), w.projection,
            view["status"], view["customer_id"], driver["driver_id"] if driver else "", view["warehouse_id"]]


class RedisOrderStore:
    """``client`` is a synchronous ``redis.Redis`` (hiredis packs and parses in C)."""

    def __init__(self, client: Any, prefix: str = "kuailv", codec: AvroCodec | None = None) -> None:
        self._r = client
        self._p = prefix
        self._codec = codec or AvroCodec(epoch_ms=True)
        self._script = client.register_script(_UPSERT_MANY)

    def key(self, order_id: str) -> str:
        return f"{self._p}:order:{order_id}"

    def load(self, order_ids: Sequence[str]) -> dict[str, State]:
        """The fold states of the orders that have one, in one round trip."""
        if not order_ids:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for oid in order_ids:
            pipe.hmget(self.key(oid), "fold", "projection")
        out = {}
        for oid, (book, projection) in zip(order_ids, pipe.execute(), strict=True):
            if book is not None:
                out[oid] = with_view(orjson.loads(book), self._view(projection))
        return out

    def _view(self, projection: bytes | None) -> dict[str, Any] | None:
        if not projection:
            return None
        decoded = self._codec.decode(projection)
        return decoded.value if self._codec.epoch_ms else _epoch_ms(decoded.value)

    def save_args(self, writes: Iterable[OrderWrite]) -> list[Any]:
        args: list[Any] = [self._p]
        for w in writes:
            args += write_args(w)
        return args

    def save(self, writes: Iterable[OrderWrite], pipe: Any = None) -> list[str] | None:
        """Write a batch in one call; the ids the compare-and-set refused (None when queued on ``pipe``)."""
        args = self.save_args(writes)
        if len(args) == 1:
            return []
        if pipe is not None:
            self._script(args=args, client=pipe)
            return None
        return [r.decode() if isinstance(r, bytes) else r for r in self._script(args=args)]

    # --- read side -----------------------------------------------------------------------------
    def projection(self, order_id: str) -> dict[str, Any] | None:
        """The order's view as the projection topic carries it (times as epoch ms)."""
        return self._view(self._r.hget(self.key(order_id), "projection"))

    def view(self, order_id: str) -> dict[str, Any] | None:
        """The public JSON view (camelCase, ISO times), or None when the order has none yet."""
        v = self.projection(order_id)
        return None if v is None else public_view(v)

    def order_ids(self, *, status: str | None = None, customer: str | None = None,
                  driver: str | None = None, warehouse: str | None = None) -> set[str]:
        """The ids of ONE index (the first given of status, customer, driver, warehouse)."""
        if status:
            key = f"{self._p}:orders:by-status:{status}"
        elif customer:
            key = f"{self._p}:orders:by-customer:{customer}"
        elif driver:
            key = f"{self._p}:orders:by-driver:{driver}"
        elif warehouse:
            key = f"{self._p}:orders:by-warehouse:{warehouse}"
        else:
            raise ValueError("give status, customer, driver or warehouse")
        return {m.decode() if isinstance(m, bytes) else m for m in self._r.smembers(key)}


def _epoch_ms(value: Any) -> Any:
    from projections.timefmt import jsonable

    return jsonable(value)
