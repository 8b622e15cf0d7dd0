"""Each driver's latest GPS position in Redis, newest event time wins.

    {p}:driver:{driver_id}:position   hash  at (epoch ms), lat, lng, speed_kmh, heading_deg,
                                            vehicle_id, driver_id, event_id
    {p}:drivers:geo                   geo set of latest positions (nearby-driver lookups)

The compare-and-set runs in Lua, so duplicates and late pings never move a
driver backwards in time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from projections.timefmt import ms

_SET_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'at')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'lat', ARGV[2], 'lng', ARGV[3], 'speed_kmh', ARGV[4],
           'heading_deg', ARGV[5], 'vehicle_id', ARGV[6], 'driver_id', ARGV[7], 'event_id', ARGV[8])
-- Redis GEO covers |lat| <= 85.05112878 (Web Mercator); polar fixes keep only the hash.
if math.abs(tonumber(ARGV[2])) <= 85.05112878 then
  redis.call('GEOADD', KEYS[2], ARGV[3], ARGV[2], ARGV[7])
end
return 1
"""


class RedisDriverPositions:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self._r = client
        self._p = prefix
        self._script = client.register_script(_SET_IF_NEWER)

    def key(self, driver_id: str) -> str:
        return f"{self._p}:driver:{driver_id}:position"

    async def save(self, pings: Iterable[Mapping[str, Any]]) -> int:
        pipe = self._r.pipeline(transaction=False)
        n = 0
        for p in pings:
            await self._script(
                keys=[self.key(p["driver_id"]), f"{self._p}:drivers:geo"],
                args=[ms(p["event_time"]), repr(float(p["lat"])), repr(float(p["lng"])), float(p["speed_kmh"]),
                      float(p["heading_deg"]), p["vehicle_id"], p["driver_id"], p["event_id"]],
                client=pipe,
            )
            n += 1
        if n:
            await pipe.execute()
        return n

    async def get(self, driver_id: str) -> dict[str, Any] | None:
        raw = await self._r.hgetall(self.key(driver_id))
        if not raw:
            return None
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in raw.items()}
        return {"driver_id": d["driver_id"], "vehicle_id": d["vehicle_id"], "event_id": d["event_id"],
                "at": int(d["at"]), "lat": float(d["lat"]), "lng": float(d["lng"]),
                "speed_kmh": float(d["speed_kmh"]), "heading_deg": float(d["heading_deg"])}
