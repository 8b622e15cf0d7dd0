"""Each driver's latest GPS position in Redis, newest event time wins.

    {p}:driver:{driver_id}:position   hash  at (epoch ms), lat, lng, speed_kmh, heading_deg,
                                            vehicle_id, driver_id, event_id
    {p}:drivers:geo                   geo set of latest positions (nearby-driver lookups)

A batch's positions are one Lua call: the compare-and-set runs in Redis, so duplicates
and late pings never move a driver backwards in time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from projections.timefmt import ms

_SET_IF_NEWER_MANY = """
local p = ARGV[1]
local geo = p .. ':drivers:geo'
local n = 0
for i = 2, #ARGV, 8 do
  local k = p .. ':driver:' .. ARGV[i + 6] .. ':position'
  local cur = redis.call('HGET', k, 'at')
  if not cur or tonumber(cur) < tonumber(ARGV[i]) then
    redis.call('HSET', k, 'at', ARGV[i], 'lat', ARGV[i + 1], 'lng', ARGV[i + 2], 'speed_kmh', ARGV[i + 3],
               'heading_deg', ARGV[i + 4], 'vehicle_id', ARGV[i + 5], 'driver_id', ARGV[i + 6],
               'event_id', ARGV[i + 7])
    -- Redis GEO covers |lat| <= 85.05112878 (Web Mercator); polar fixes keep only the hash.
    if math.abs(tonumber(ARGV[i + 1])) <= 85.05112878 then
      redis.call('GEOADD', geo, ARGV[i + 2], ARGV[i + 1], ARGV[i + 6])
    end
    n = n + 1
  end
end
return n
"""


class RedisDriverPositions:
    """``client`` is a synchronous ``redis.Redis``."""

    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self._r = client
        self._p = prefix
        self._script = client.register_script(_SET_IF_NEWER_MANY)

    def key(self, driver_id: str) -> str:
        return f"{self._p}:driver:{driver_id}:position"

    def save(self, pings: Iterable[Mapping[str, Any]], pipe: Any = None) -> int | None:
        """Store the pings that are newer than what Redis has; how many it took (None when queued on ``pipe``)."""
        args: list[Any] = [self._p]
        for p in pings:
            args += [ms(p["event_time"]), repr(float(p["lat"])), repr(float(p["lng"])), float(p["speed_kmh"]),
                     float(p["heading_deg"]), p["vehicle_id"], p["driver_id"], p["event_id"]]
        if len(args) == 1:
            return 0
        if pipe is not None:
            self._script(args=args, client=pipe)
            return None
        return int(self._script(args=args))

    def get(self, driver_id: str) -> dict[str, Any] | None:
        return _position(self._r.hgetall(self.key(driver_id)))

    def get_many(self, driver_ids: list[str]) -> dict[str, dict[str, Any]]:
        """driver id -> newest fix, for those that have one, in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for driver_id in driver_ids:
            pipe.hgetall(self.key(driver_id))
        found = {d: _position(raw) for d, raw in zip(driver_ids, pipe.execute(), strict=True)}
        return {d: fix for d, fix in found.items() if fix is not None}


def _position(raw: Mapping[Any, Any]) -> dict[str, Any] | None:
    if not raw:
        return None
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}
    return {"driver_id": d["driver_id"], "vehicle_id": d["vehicle_id"], "event_id": d["event_id"],
            "at": int(d["at"]), "lat": float(d["lat"]), "lng": float(d["lng"]),
            "speed_kmh": float(d["speed_kmh"]), "heading_deg": float(d["heading_deg"])}
