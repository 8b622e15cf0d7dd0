"""The operations dashboard's Redis reads (``service.dashboard_routes``): the order funnel, the order map, the
fleet, the warehouses, stock, and alert acknowledgements. Each asks ``service.policy`` first and raises the
``service.reads`` errors (403 with the policy's reason, 404, 422, 503).

Order views are Avro in Redis and decoding one costs a few hundred microseconds, so the funnel (the newest
5,000 orders of every status) and the map (5,000 markers) would decode tens of thousands per request.
``OrderFacts`` keeps what they need of each order (status, destination, warehouse, driver, lines, the
funnel's stage durations) keyed by the order's applied version: a request reads the versions in one
pipelined round trip and decodes only the orders that changed since. Answers are cached 5 s (``TtlCache``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from config.settings import Settings
from projections.order_status import OrderStatus
from projections.timefmt import iso
from schemas.codec import AvroCodec
from service import dashboard_stock, funnel
from service.alert_acks import acknowledge, alert_exists
from service.auth import Principal
from service.policy import (
    Caller,
    may_acknowledge_alert,
    may_read_warehouses,
    may_watch_operations,
)
from service.reads import NotFound, Unavailable, allow
from streams import queries
from streams.sinks.redis_orders import RedisOrderStore

SAMPLE_PER_STATUS = 5_000  # the funnel's stage times: the newest orders of each status
MAX_MARKERS = 5_000
CACHE_S = 5.0


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class TtlCache:
    """Answers kept ``ttl_s`` per key; one computation at a time per key (concurrent callers wait for it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._locks: dict[Any, threading.Lock] = {}
        self._values: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, ttl_s: float, compute: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            if hit is not None and self._clock() - hit[0] < ttl_s:
                return hit[1]
            value = compute()
            self._values[key] = (self._clock(), value)
            return value


def order_facts(view: Mapping[str, Any]) -> dict[str, Any]:
    """What the dashboard keeps of one order view (epoch-ms times, as ``RedisOrderStore`` decodes it)."""
    dest = view.get("destination")
    driver = view.get("driver")
    return {"status": view["status"], "warehouseId": view["warehouse_id"], "customerId": view["customer_id"],
            "driverId": driver["driver_id"] if driver else None,
            "lat": dest["lat"] if dest else None, "lng": dest["lng"] if dest else None,
            "lines": [(ln["sku"], ln["name"], float(ln.get("short") or 0.0)) for ln in view.get("lines") or []],
            "durations": funnel.durations(view)}


class OrderFacts:
    """``order_facts`` of many orders, decoded only when an order's applied version changed (at most
    ``max_orders`` kept, least recently asked dropped first)."""

    def __init__(self, settings: Settings, max_orders: int = 120_000) -> None:
        self.settings = settings
        self.max_orders = max_orders
        self._codec = AvroCodec(epoch_ms=True)
        self._lock = threading.Lock()
        self._facts: OrderedDict[str, tuple[bytes, dict[str, Any]]] = OrderedDict()
        self.decoded = 0  # orders decoded so far (the cost the cache saves; tests read it)

    def get(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """order id -> facts for the ids that have a view in Redis."""
        with queries.pooled_client(self.settings) as r:
            store = RedisOrderStore(r, self.settings.redis_prefix, self._codec)
            pipe = r.pipeline(transaction=False)
            for oid in order_ids:
                pipe.hget(store.key(oid), "applied")
            versions = dict(zip(order_ids, pipe.execute(), strict=True))
            with self._lock:
                stale = [o for o, v in versions.items() if v is not None and self._facts.get(o, (None,))[0] != v]
            states = store.load(stale)
        fresh = {o: (versions[o], order_facts(s["view"])) for o, s in states.items() if s.get("view") is not None}
        with self._lock:
            self.decoded += len(states)
            self._facts.update(fresh)
            out = {}
            for oid, version in versions.items():
                hit = self._facts.get(oid)
                if hit is not None and version is not None:
                    self._facts.move_to_end(oid)
                    out[oid] = hit[1]
            while len(self._facts) > self.max_orders:
                self._facts.popitem(last=False)
        return out


class DashboardReads:
    def __init__(self, settings: Settings, clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self.settings = settings
        self.clock_ms = clock_ms
        self.facts = OrderFacts(settings)
        self.cache = TtlCache()
        self._warehouses: list[dict[str, Any]] | None = None
        self._cold_chain_rules: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ orders
    def _ids(self, statuses: Iterable[OrderStatus]) -> dict[OrderStatus, set[str]]:
        return {s: queries.order_ids(self.settings, status=s.value) for s in statuses}

    def funnel(self, who: Caller) -> dict[str, Any]:
        allow(may_watch_operations(who, "the order funnel"))
        return self.cache.get("funnel", CACHE_S, self._funnel)

    def _funnel(self) -> dict[str, Any]:
        counts = funnel.all_counts(queries.progress(self.settings)["by_status"])
        chosen = [o for ids in self._ids(OrderStatus).values() for o in funnel.newest(ids, SAMPLE_PER_STATUS)]
        facts = self.facts.get(chosen)
        samples = [d for f in facts.values() for d in f["durations"]]
        return {"counts": counts, "stages": funnel.stage_summary(samples), "sampled": len(facts),
                "asOf": iso(self.clock_ms())}

    def map_orders(self, who: Caller, active: bool = True) -> dict[str, Any]:
        allow(may_watch_operations(who, "the order map"))
        return self.cache.get(("map", active), CACHE_S, lambda: self._map_orders(active))

    def _map_orders(self, active: bool) -> dict[str, Any]:
        statuses = [s for s in OrderStatus if not active or funnel.active(s)]
        ids = set().union(*self._ids(statuses).values())
        chosen = funnel.newest(ids, MAX_MARKERS)
        facts = self.facts.get(chosen)
        markers = [{"orderId": o, "status": f["status"], "lat": f["lat"], "lng": f["lng"],
                    "warehouseId": f["warehouseId"], "driverId": f["driverId"]}
                   for o in chosen if (f := facts.get(o)) is not None and f["lat"] is not None]
        return {"orders": markers, "total": len(ids), "truncated": len(ids) > len(chosen)}

    # ------------------------------------------------------------------ fleet
    def cold_chain_rules(self) -> tuple[str, ...]:
        """The ids of the cold-chain rules (breach, exposure) of the alert rules file."""
        if self._cold_chain_rules is None:
            from config.alert_rules import load_rules_file
            from projections.alert_rules import ColdChainBreach, ColdChainExposure

            rules = load_rules_file(self.settings.alert_rules_file).rules.values()
            cold = (ColdChainBreach, ColdChainExposure)
            self._cold_chain_rules = tuple(r.id for r in rules if isinstance(r.params, cold))
        return self._cold_chain_rules

    def fleet(self, who: Caller) -> dict[str, Any]:
        """Every driver of the geo set with their newest fix, load and cold-chain state."""
        allow(may_watch_operations(who, "the fleet"))
        import orjson

        from projections.fleet import driver_load
        from streams.sinks.redis_fleet import RedisFleet
        from streams.sinks.redis_positions import RedisDriverPositions

        p = self.settings.redis_prefix
        with queries.pooled_client(self.settings) as r:
            drivers = sorted(m.decode() for m in r.zrange(f"{p}:drivers:geo", 0, -1))
            fixes = RedisDriverPositions(r, p).get_many(drivers)  # one round trip, not one per van
            raw_state = r.get(RedisFleet(r, p).state_key())
            prefixes = tuple(f"{rule}/" for rule in self.cold_chain_rules())
            cold_ids = [i for i in (m.decode() for m in r.zrange(f"{p}:alerts:open", 0, -1)) if i.startswith(prefixes)]
            bodies = r.mget([f"{p}:alert:{i}" for i in cold_ids]) if cold_ids else []
        cold = [orjson.loads(b) for b in bodies if b is not None]
        state = None if raw_state is None else orjson.loads(raw_state)
        out = []
        for driver_id in drivers:
            fix = fixes.get(driver_id)
            if fix is None:
                continue
            load = driver_load(state, driver_id)
            out.append({"driverId": driver_id, "vehicleId": fix["vehicle_id"], "lat": fix["lat"], "lng": fix["lng"],
                        "atMs": fix["at"], "speedKmh": fix["speed_kmh"],
                        "loadKg": None if load is None else load["load_kg"],
                        "ordersOnBoard": None if load is None else len(load["order_ids"]),
                        "coldChain": cold_chain_state(cold, driver_id, fix["vehicle_id"])})
        return {"drivers": out, "asOf": iso(self.clock_ms())}

    # ------------------------------------------------------------------ warehouses
    def warehouses(self, who: Caller) -> dict[str, Any]:
        allow(may_read_warehouses(who))
        if self._warehouses is None:
            from config.geofences import load_fence_file
            from projections.fences import FenceError

            try:
                fences = load_fence_file(self.settings.fence_file)
            except FenceError as exc:
                raise Unavailable(f"the fence file: {exc}") from exc
            self._warehouses = warehouse_markers(fences.fences)
        return {"warehouses": self._warehouses}

    # ------------------------------------------------------------------ stock
    def stock(self, who: Caller, warehouse_id: str) -> dict[str, Any]:
        return dashboard_stock.stock(self.settings, who, warehouse_id)

    def merchant_stock(self, who: Caller, customer_id: str) -> dict[str, Any]:
        return dashboard_stock.merchant_stock(self.settings, self.facts.get, who, customer_id)

    # ------------------------------------------------------------------ acknowledgements
    def acknowledge(self, who: Principal, alert_id: str, note: str | None) -> dict[str, Any]:
        """Record that ``who`` handles the alert (``service.alert_acks``); 404 for an alert that never existed."""
        allow(may_acknowledge_alert(who, alert_id))
        at = self.clock_ms()
        with queries.pooled_client(self.settings) as r:
            if not alert_exists(r, self.settings.redis_prefix, alert_id):
                raise NotFound(f"no alert {alert_id}")
            acknowledge(r, self.settings.redis_prefix, alert_id, by=who.subject, role=who.role, at_ms=at, note=note)
        return {"alertId": alert_id, "acknowledgedBy": who.subject, "acknowledgedAt": iso(at)}


_SEVERITY_RANK = {"INFO": 1, "WARNING": 1, "CRITICAL": 2}
_COLD_CHAIN = ("ok", "warning", "critical")


def cold_chain_state(alerts: Iterable[Mapping[str, Any]], driver_id: str, vehicle_id: str) -> str:
    """The worst open cold-chain alert of the driver or their van: critical, warning (WARNING or INFO), ok."""
    worst = max((_SEVERITY_RANK.get(a["severity"], 1) for a in alerts if a.get("status", "OPEN") == "OPEN"
                 and (a.get("driver_id") == driver_id or a.get("vehicle_id") == vehicle_id)), default=0)
    return _COLD_CHAIN[worst]


def warehouse_markers(fences: Iterable[Any]) -> list[dict[str, Any]]:
    """The WAREHOUSE and DEPOT fences as map markers (a circle's centre, a polygon's centroid)."""
    from shapely.geometry import Polygon

    out = []
    for f in fences:
        if f.kind not in ("WAREHOUSE", "DEPOT"):
            continue
        if f.circle is not None:
            lat, lng = f.circle[0], f.circle[1]
        else:
            c = Polygon([(x, y) for y, x in f.polygon]).centroid
            lat, lng = c.y, c.x
        out.append({"id": f.id, "kind": f.kind, "name": f.name, "lat": round(lat, 6), "lng": round(lng, 6)})
    return out
