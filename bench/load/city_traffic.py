"""A city's traffic, one second of city time at a time. Pure: no I/O, no clock (times are passed in).

* **Orders**: ``mix.orders_per_s`` new orders a second, each a legal story (created, paid, stock checked,
  picking, 3 lines weighed, packed, dispatched to a van, delivered) spread over 1 min of city time
  (``OFFSETS_S``: the order stream reaches its full rate ``RAMP_S`` after the start); the 3 picks also
  go to the stock topic as WMS ``PICK`` movements. Nothing in them
  trips a rule (no shortage, weights on target, windows 1-2 h ahead), so alerts come from the probes.
* **GPS**: every van pings every 10 s of city time (phases spread evenly), driving at 20-50 km/h towards
  the delivery address of the order it carries, else towards a random point in the 5th ring.
* **Cold chain**: each refrigerated van has a CHILLED and a FROZEN device reading every 20 s, in range.

Each record carries its event time = the wall time it is due at (``start_ms`` + ``Schedule.wall_at``).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.load.mix import COMPARTMENTS, GPS_EVERY_S, SENSOR_EVERY_S, Mix, Schedule
from schemas.topics import GPS, ORDER_EVENTS, SENSORS, STOCK
from simulator import events as ev

LAT0, LAT1, LNG0, LNG1 = 39.78, 40.02, 116.23, 116.55  # about the 5th ring
WAREHOUSES = (("WH-BJ-CY-01", 39.9625, 116.498), ("WH-BJ-FT-01", 39.835, 116.286), ("WH-BJ-HD-01", 40.03, 116.27))
CUSTOMERS = 4_000  # merchants ordering (fixed whatever the rate, so a followed share stays the same)
# city seconds from an order's creation to each of its 10 events (on board from 25 s to 60 s)
OFFSETS_S = (0, 3, 6, 10, 12, 14, 16, 20, 25, 60)
RAMP_S = OFFSETS_S[-1]  # from then on every story stage is in flight: the order stream is at its full rate


@dataclass(slots=True)
class Item:
    """One record due at ``wall_s`` (seconds from the start of the run)."""

    wall_s: float
    topic: str
    key: str
    record_type: str
    record: dict[str, Any]
    follow: tuple[str, int] | None = None  # (order id, version) of an order a WebSocket client follows


def customer_id(i: int) -> str:
    return f"CUST-L{i:04d}"


def order_id(n: int) -> str:
    return f"KLL{n:08d}"


def driver_id(v: int) -> str:
    return f"DRV-L{v:05d}"


class CityTraffic:
    def __init__(self, mix: Mix, schedule: Schedule, start_ms: int, *, seed: int = 12,
                 followed_customers: int = 100) -> None:
        self.mix, self.schedule, self.start_ms = mix, schedule, start_ms
        self.steady_s = schedule.steady_s
        self.rng = random.Random(seed)
        rng = self.rng
        self.followed = followed_customers
        self.customer_loc = [(rng.uniform(LAT0, LAT1), rng.uniform(LNG0, LNG1)) for _ in range(CUSTOMERS)]
        n = mix.vans
        self.np_rng = np.random.default_rng(seed)
        self.lat, self.lng = self.np_rng.uniform(LAT0, LAT1, n), self.np_rng.uniform(LNG0, LNG1, n)
        self.speed = self.np_rng.uniform(20, 50, n) / 3.6  # m/s
        self.tlat, self.tlng = self.lat.copy(), self.lng.copy()
        self.has_target = np.zeros(n, dtype=bool)
        # van v pings at city ms phase[v] + k * 10 s; bucket vans by the second of the 10 s their phase falls in
        every_ms = int(GPS_EVERY_S * 1000)
        self.gps_phase = [v * every_ms // n for v in range(n)]
        buckets: list[list[int]] = [[] for _ in range(int(GPS_EVERY_S))]
        for v, ph in enumerate(self.gps_phase):
            buckets[ph // 1000].append(v)
        self.gps_bucket = [np.array(b, dtype=np.int64) for b in buckets]
        devices = mix.reefer_vans * COMPARTMENTS
        sens_ms = int(SENSOR_EVERY_S * 1000)
        self.sensor_phase = [d * sens_ms // devices for d in range(devices)]
        self.sensor_bucket: list[list[int]] = [[] for _ in range(int(SENSOR_EVERY_S))]
        for d, ph in enumerate(self.sensor_phase):
            self.sensor_bucket[ph // 1000].append(d)
        self.pending: list[tuple[int, int, int, Item]] = []  # (city ms, seq, customer if a dispatch, item) heap
        self.templates = self._templates()
        self.seq = 0
        self.orders_started = 0
        self.next_van = 0

    # ---------------------------------------------------------------- time

    def wall_s(self, city_ms: int) -> float:
        t = city_ms / 1000
        return t if t <= self.steady_s else self.schedule.wall_at(t)

    def event_ms(self, city_ms: int) -> int:
        return self.start_ms + round(self.wall_s(city_ms) * 1000)

    # ---------------------------------------------------------------- one second

    def second(self, s: int) -> list[Item]:
        """Every record of city second ``s`` (``[s, s + 1)``), in due order."""
        lo, hi = s * 1000, (s + 1) * 1000
        out: list[Item] = []
        while self.orders_started < self.mix.orders_per_s * (s + 1):
            start = int(self.orders_started / self.mix.orders_per_s * 1000)
            self._start_order(self.orders_started, max(start, lo))
            self.orders_started += 1
        while self.pending and self.pending[0][0] < hi:
            at, _, customer, item = heapq.heappop(self.pending)
            if customer >= 0:  # a dispatch: the van heads for the customer
                v = int(item.record["driver_id"][5:])
                self.tlat[v], self.tlng[v] = self.customer_loc[customer]
                self.has_target[v] = True
            item.wall_s = self.wall_s(at)
            self._retime(item, at)
            out.append(item)
        out += self._gps(s)
        out += self._sensors(s)
        out.sort(key=lambda it: it.wall_s)
        return out

    def seconds(self) -> Iterator[list[Item]]:
        for s in range(math.ceil(self.schedule.city_s)):
            yield self.second(s)

    def _retime(self, item: Item, at: int) -> None:
        item.record["event_time"] = self.event_ms(at)

    # ---------------------------------------------------------------- orders

    def _push(self, at: int, item: Item, customer: int = -1) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (at, self.seq, customer, item))

    def _start_order(self, n: int, at: int) -> None:
        oid = order_id(n)
        c = self.rng.randrange(CUSTOMERS)
        w = n % len(WAREHOUSES)
        v = self.next_van
        self.next_van = (v + 1) % self.mix.vans
        follow = c < self.followed
        for k, (rtype, tmpl) in enumerate(self.templates[w]):
            version = k + 1
            rec = {**tmpl, "event_id": f"{oid}/{version}", "order_id": oid}
            t = at + OFFSETS_S[k] * 1000
            item = Item(0.0, ORDER_EVENTS.name, oid, rtype, rec, (oid, version) if follow else None)
            if rtype == "OrderCreated":
                lat, lng = self.customer_loc[c]
                rec["customer_id"] = customer_id(c)
                rec["delivery_address"] = {**tmpl["delivery_address"], "location": {"lat": lat, "lng": lng}}
            elif rtype == "OrderDispatched":
                rec.update(driver_id=driver_id(v), vehicle_id=f"VAN-L{v:05d}")
                self._push(t, item, c)
                continue
            elif rtype == "OrderDelivered":
                lat, lng = self.customer_loc[c]
                rec["location"] = {"lat": lat, "lng": lng}
            self._push(t, item)
            if rtype == "LineWeighed":
                wh = WAREHOUSES[w][0]
                self._push(t, Item(0.0, STOCK.name, f"{wh}/{rec['sku']}", "StockMovement", {
                    "event_id": f"pick-{oid}-{rec['line_no']}", "warehouse_id": wh, "sku": rec["sku"],
                    "kind": "PICK", "quantity": rec["picked_quantity"], "unit": _unit(rec["sku"]),
                    "order_id": oid, "line_no": rec["line_no"], "reference": None, "event_time": 0,
                    "producer": "wms"}))

    @staticmethod
    def story(oid: str, customer: str, warehouse: str, origin: tuple[float, float], dest: tuple[float, float],
              van: int) -> list[ev.Event]:
        """A legal, rule-quiet story of one order (event times set when due)."""
        _, created = ev.order_created(oid, 1, 0, customer_id=customer)
        created["warehouse_id"] = warehouse
        created["delivery_address"] = {**created["delivery_address"], "location": {"lat": dest[0], "lng": dest[1]}}
        lines = created["lines"]
        out: list[ev.Event] = [("OrderCreated", created), ev.payment_confirmed(oid, 2, 0, created["total_cents"])]
        out.append(ev.stock_checked(oid, 3, 0, lines))
        out.append(ev.picking_started(oid, 4, 0))
        for i, ln in enumerate(lines):
            out.append(ev.line_weighed(oid, 5 + i, 0, ln))
        out.append(ev.order_packed(oid, 8, 0))
        dispatched = ev.order_dispatched(oid, 9, 0, driver_id(van))
        dispatched[1].update(vehicle_id=f"VAN-L{van:05d}", origin={"lat": origin[0], "lng": origin[1]})
        out.append(dispatched)
        out.append(ev.order_delivered(oid, 10, 0, lines))
        out[-1][1]["location"] = {"lat": dest[0], "lng": dest[1]}
        for _, rec in out:
            if "warehouse_id" in rec:
                rec["warehouse_id"] = warehouse
        return out

    @classmethod
    def _templates(cls) -> list[list[ev.Event]]:
        """One story per warehouse; an order copies the top level and sets its own ids, customer, van."""
        out = []
        for wh, lat, lng in WAREHOUSES:
            story = cls.story("KLL00000000", customer_id(0), wh, (lat, lng), (lat, lng), 0)
            out.append(story)
        return out

    # ---------------------------------------------------------------- telemetry

    def _gps(self, s: int) -> list[Item]:
        """The pings of city second ``s``: the vans of that phase bucket move 10 s on (vectorised)."""
        vans = self.gps_bucket[s % int(GPS_EVERY_S)]
        if not len(vans):
            return []
        rnd = self.np_rng
        free = vans[~self.has_target[vans]]  # no order on board: a random point in the city
        self.tlat[free], self.tlng[free] = rnd.uniform(LAT0, LAT1, len(free)), rnd.uniform(LNG0, LNG1, len(free))
        self.has_target[free] = True
        lat, lng = self.lat[vans], self.lng[vans]
        dy, dx = (self.tlat[vans] - lat) * 111_000, (self.tlng[vans] - lng) * 85_000
        dist = np.maximum(np.hypot(dx, dy), 1e-9)
        step = self.speed[vans] * GPS_EVERY_S
        arrived = dist <= step
        frac = np.where(arrived, 1.0, step / dist)
        self.lat[vans], self.lng[vans] = lat + dy * frac / 111_000, lng + dx * frac / 85_000
        self.has_target[vans[arrived]] = False
        heading = (np.degrees(np.arctan2(dx, dy)) + 360) % 360
        noise = rnd.normal(0, 3e-5, (2, len(vans)))
        base = (s // int(GPS_EVERY_S)) * int(GPS_EVERY_S) * 1000
        out = []
        for v, la, ln, sp, hd in zip(vans.tolist(), (self.lat[vans] + noise[0]).tolist(),
                                     (self.lng[vans] + noise[1]).tolist(), (self.speed[vans] * 3.6).tolist(),
                                     heading.tolist(), strict=True):
            at = base + self.gps_phase[v]
            d = driver_id(v)
            out.append(Item(self.wall_s(at), GPS.name, d, "GpsPing", {
                "event_id": f"gps-{v}-{at}", "driver_id": d, "vehicle_id": f"VAN-L{v:05d}",
                "event_time": self.event_ms(at), "producer": "driver-app", "lat": la, "lng": ln,
                "speed_kmh": sp, "heading_deg": hd, "accuracy_m": 5.0}))
        return out

    def _sensors(self, s: int) -> list[Item]:
        rng = self.rng
        every = int(SENSOR_EVERY_S)
        base = (s // every) * every * 1000
        out = []
        for d in self.sensor_bucket[s % every]:
            at = base + self.sensor_phase[d]
            van, frozen = divmod(d, COMPARTMENTS)
            temp = -20.0 + rng.random() if frozen else 1.5 + 2 * rng.random()
            rec = {"event_id": f"temp-{d}-{at}", "device_id": f"TEMP-L{van:05d}-{'F' if frozen else 'C'}",
                   "vehicle_id": f"VAN-L{van:05d}", "warehouse_id": None,
                   "compartment": "FROZEN" if frozen else "CHILLED", "event_time": self.event_ms(at),
                   "producer": "reefer", "temperature_c": temp, "humidity_pct": 80.0}
            out.append(Item(self.wall_s(at), SENSORS.name, rec["device_id"], "SensorReading", rec))
        return out


def _unit(sku: str) -> str:
    return "PIECE" if sku.startswith("DAIRY") else "KG"
