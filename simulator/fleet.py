"""Refrigerated vans: dispatch from each depot, multi-stop trips, GPS, accidents and relief.

A packed order waits in its depot's queue. An idle van leaves with up to
``max_stops`` orders as soon as it is full or the oldest has waited
``dispatch_hold_s``. On the way to a customer a leg may end in a traffic
accident: every order still on board gets an ExceptionReported, another van
from the depot drives out, takes the goods over and re-dispatches them, and
the crashed van is towed home. Vans emit a GpsPing every ``gps_interval_s``
while moving. Each leg is slowed by the traffic and rain in force where and when
it starts (``simulator.conditions``), and a driving van reports them as a
RoadConditions record at departure and every ``conditions_interval_s``.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass, field

from simulator.city import City, Driver, Warehouse
from simulator.conditions import CityConditions, slowdown
from simulator.config import SimulationConfig, Telemetry
from simulator.engine import Engine, Process
from simulator.events import MINUTE
from simulator.geo import Point, haversine_m
from simulator.orders import SimOrder
from simulator.outcomes import at_door, complete_return, dispatch_payload, exception_payload
from simulator.routes import GpsNoise, Route, estimate_s, plan_route

GPS_PRODUCER = "driver-app/3.2"
CONDITIONS_PRODUCER = "driver-app/3.2+amap-traffic"
_ACCIDENTS = ("追尾事故, 车辆无法继续行驶", "路口剐蹭, 等待交警处理", "被后车追尾, 冷机受损")


@dataclass(slots=True)
class Van:
    driver: Driver
    home: Warehouse
    pos: Point
    noise: GpsNoise
    ping_seq: int = 0
    returns: list[SimOrder] = field(default_factory=list)  # refused goods on board
    conditions_seq: int = 0
    conditions_noise: random.Random | None = None  # measurement noise of the RoadConditions it reports


@dataclass(slots=True)
class Depot:
    warehouse: Warehouse
    idle: deque[Van] = field(default_factory=deque)
    queue: list[SimOrder] = field(default_factory=list)  # packed, in ready order
    rescues: deque[tuple[Point, list[SimOrder], Van]] = field(default_factory=deque)
    timer_at: int | None = None


class Fleet:
    def __init__(self, engine: Engine, config: SimulationConfig, city: City) -> None:
        self.engine = engine
        self.config = config
        self.rng = random.Random(f"kuailv-fleet:{config.seed}")
        self.interval_ms = max(1, round(config.gps_interval_s * 1000))
        self.hold_ms = int(config.dispatch_hold_s * 1000)
        self.depots = {wh.id: Depot(wh) for wh in city.warehouses}
        self.conditions = (CityConditions(config.seed, config.traffic_scale, config.rain_scale)
                           if config.conditions else None)
        self.conditions_ms = max(1, round(config.conditions_interval_s * 1000))
        for d in city.drivers:
            home = city.warehouse(d.warehouse_id)
            noise = GpsNoise(random.Random(f"kuailv-gps:{config.seed}:{d.id}"))
            van = Van(d, home, home.location, noise)
            van.conditions_noise = random.Random(f"kuailv-conditions:{config.seed}:noise:{d.id}")
            self.depots[d.warehouse_id].idle.append(van)

    # -- dispatching --------------------------------------------------------------------------

    def ready(self, o: SimOrder) -> None:
        """A packed order joins its depot's dispatch queue."""
        o.ready_at = self.engine.now
        depot = self.depots[o.warehouse.id]
        depot.queue.append(o)
        self._dispatch(depot)

    def _dispatch(self, depot: Depot) -> None:
        engine = self.engine
        while depot.idle:
            if depot.rescues:
                spot, stops, crashed = depot.rescues[0]
                van = next((v for v in depot.idle if v is not crashed), None)
                if van is not None:
                    depot.rescues.popleft()
                    depot.idle.remove(van)
                    engine.spawn(engine.now, self._relief(van, spot, stops))
                    continue
            if not depot.queue:
                return
            due = depot.queue[0].ready_at + self.hold_ms
            if len(depot.queue) < self.config.max_stops and engine.now < due:
                if depot.timer_at is None or due < depot.timer_at:
                    depot.timer_at = due
                    engine.spawn(due, self._timer(depot))
                return
            engine.spawn(engine.now, self._trip(depot.idle.popleft(), self._batch(depot)))

    def _timer(self, depot: Depot) -> Process:
        depot.timer_at = None
        self._dispatch(depot)
        yield from ()

    def _batch(self, depot: Depot) -> list[SimOrder]:
        """The oldest ready order plus its nearest neighbours with a similar window, in visiting order."""
        head = depot.queue[0]
        similar = [o for o in depot.queue[1:] if o.window[0] <= head.window[0] + 30 * MINUTE]
        others = sorted(similar, key=lambda o: haversine_m(head.restaurant.location, o.restaurant.location))
        batch = [head, *others[: self.config.max_stops - 1]]
        taken = {o.order_id for o in batch}
        depot.queue = [o for o in depot.queue if o.order_id not in taken]
        if self.config.stop_order == "planned":
            # Imported here: only planned runs need OR-Tools. Loading takes ~10 min, a stop ~7.5 min; simulated
            # drivers deliver on arrival, even before the window opens.
            from projections.eta import Stop
            from projections.routing import TravelTimes, plan_stops
            by_id = {o.order_id: o for o in batch}
            plan = plan_stops(depot.warehouse.location, self.engine.now + 10 * MINUTE,
                              [Stop(o.order_id, *o.restaurant.location, o.window[0], o.window[1]) for o in batch],
                              self.config.route_travel_times or TravelTimes(), 450_000, wait_for_window=False)
            return [by_id[order_id] for order_id in plan.order]
        route, pos = [], depot.warehouse.location
        while batch:
            nxt = min(batch, key=lambda o: haversine_m(pos, o.restaurant.location))
            batch.remove(nxt)
            route.append(nxt)
            pos = nxt.restaurant.location
        return route

    def _dispatch_all(self, van: Van, stops: list[SimOrder]) -> Process:
        now, pos, eta = self.engine.now, van.pos, float(self.engine.now)
        for i, o in enumerate(stops):
            eta += estimate_s(pos, o.restaurant.location) * 1000 + (7 * MINUTE if i else 0)
            pos = o.restaurant.location
            yield o.cmd(now, "dispatch", dispatch_payload(van.driver, van.pos, int(eta)))

    # -- trips ----------------------------------------------------------------------------------

    def _trip(self, van: Van, stops: list[SimOrder]) -> Process:
        yield self.engine.now + int(self.rng.uniform(5, 15) * MINUTE)  # load the van
        yield from self._dispatch_all(van, stops)
        yield from self._run_stops(van, stops)

    def _relief(self, van: Van, spot: Point, stops: list[SimOrder]) -> Process:
        """Another van drives to the accident, takes the goods over and carries on."""
        yield self.engine.now + int(self.rng.uniform(3, 8) * MINUTE)  # briefing, start the engine
        yield from self._drive(van, self._slowed(van, plan_route(self.rng, van.pos, spot)))
        yield self.engine.now + int(self.rng.uniform(8, 15) * MINUTE)  # move the boxes across
        yield from self._dispatch_all(van, stops)
        yield from self._run_stops(van, stops, may_crash=False)  # one accident per order at most: runs end

    def _run_stops(self, van: Van, stops: list[SimOrder], may_crash: bool = True) -> Process:
        engine, rng = self.engine, self.rng
        while stops:
            o = stops[0]
            free = plan_route(rng, van.pos, o.restaurant.location)
            route = self._slowed(van, free)  # the draws below test the free-flow duration, as without conditions
            crash_s = None
            if may_crash and free.duration_s > 60 and rng.random() < self.config.p_accident:
                crash_s = route.duration_s * rng.uniform(0.2, 0.8)
            # Incidents come from a stream of their own, so enabling them leaves every other draw as it was.
            incidents = random.Random(f"kuailv-incidents:{self.config.seed}:{o.order_id}:{van.driver.id}")
            jam = dropout = None
            if crash_s is None and free.duration_s > 120 and incidents.random() < self.config.p_traffic_jam:
                jam = (route.duration_s * incidents.uniform(0.2, 0.8), int(incidents.uniform(40, 80) * MINUTE))
            if free.duration_s > 120 and incidents.random() < self.config.p_gps_dropout:
                dropout = (route.duration_s * incidents.uniform(0.1, 0.3), int(incidents.uniform(12, 20) * MINUTE))
            yield from self._drive(van, route, crash_s, jam=jam, dropout=dropout)
            if crash_s is not None:
                yield from self._crash(van, stops)
                return
            stops.pop(0)
            yield from at_door(engine, o, van.driver, van.returns)
            yield engine.now + int(rng.uniform(1, 3) * MINUTE)
        yield from self._go_home(van)

    def _crash(self, van: Van, stops: list[SimOrder]) -> Process:
        engine = self.engine
        description = self.rng.choice(_ACCIDENTS)
        for o in stops:
            yield o.cmd(engine.now, "report_exception",
                        exception_payload("TRAFFIC_ACCIDENT", description, van.driver, van.pos))
        depot = self.depots[van.home.id]
        depot.rescues.append((van.pos, list(stops), van))
        self._dispatch(depot)
        yield engine.now + int(self.rng.uniform(60, 150) * MINUTE)  # police report, then towed home
        yield from self._go_home(van)

    def _go_home(self, van: Van) -> Process:
        engine = self.engine
        yield from self._drive(van, self._slowed(van, plan_route(self.rng, van.pos, van.home.location)))
        for o in van.returns:
            engine.spawn(engine.now, complete_return(engine, o, 10, 30), work=False)
        van.returns.clear()
        depot = self.depots[van.home.id]
        depot.idle.append(van)
        self._dispatch(depot)

    # -- GPS and road conditions ------------------------------------------------------------------

    def _slowed(self, van: Van, route: Route) -> Route:
        """``route`` (free-flow speeds) driven under the traffic and rain in force at departure, at ``van.pos``."""
        if self.conditions is None:
            return route
        return route.slowed(slowdown(self.conditions.at(self.engine.now, van.pos)))

    def _drive(self, van: Van, route: Route, until_s: float | None = None, *,
               jam: tuple[float, int] | None = None, dropout: tuple[float, int] | None = None) -> Process:
        """Move ``van`` along ``route`` (to its end, or stop after ``until_s``), pinging on the way.

        ``jam`` = (seconds into the route, ms): the van stands still there that long (pings at 0 km/h);
        ``dropout`` = (seconds into the route, ms): no pings for that long (the van keeps moving)."""
        engine = self.engine
        total_s = route.duration_s if until_s is None else until_s
        end_ms = int(total_s * 1000)
        jam_at, jam_ms = (int(jam[0] * 1000), jam[1]) if jam else (end_ms + 1, 0)
        quiet = (int(dropout[0] * 1000), int(dropout[0] * 1000) + dropout[1]) if dropout else (-1, -1)
        if end_ms > 0:
            t0 = engine.now
            t = t0
            report_at = t0  # next RoadConditions report (the app is silent in a dead zone too)
            while t + self.interval_ms // 2 < t0 + end_ms + (jam_ms if t - t0 >= jam_at else 0):
                if t > engine.now:
                    yield t
                elapsed = t - t0
                moving = elapsed if elapsed < jam_at else max(jam_at, elapsed - jam_ms)
                pos, speed, heading = route.at(moving / 1000)
                if jam_at <= elapsed < jam_at + jam_ms:
                    speed = 0.0
                if not quiet[0] <= elapsed < quiet[1]:
                    if self.conditions is not None and t >= report_at:
                        yield self._road_conditions(van, pos)
                        report_at = t + self.conditions_ms
                    yield self._ping(van, pos, speed, heading)
                t += self.interval_ms
            yield t0 + end_ms + (jam_ms if jam_at <= end_ms else 0)
            pos, _, heading = route.at(total_s)
            yield self._ping(van, pos, 0.0, heading)
        van.pos = route.points[-1] if until_s is None else route.at(total_s)[0]

    def _ping(self, van: Van, true: Point, speed: float, heading: float) -> Telemetry:
        (lat, lng), speed, heading, accuracy = van.noise.fix(true, speed, heading, self.engine.now)
        van.ping_seq += 1
        d = van.driver
        record = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kuailv-sim:{self.config.seed}:{d.id}:{van.ping_seq}")),
            "driver_id": d.id, "vehicle_id": d.vehicle_id, "event_time": self.engine.now, "producer": GPS_PRODUCER,
            "lat": lat, "lng": lng, "speed_kmh": speed, "heading_deg": heading, "accuracy_m": accuracy,
        }
        return Telemetry(self.engine.now, "GpsPing", d.id, record)

    def _road_conditions(self, van: Van, at_pos: Point) -> Telemetry:
        """What the navigation provider reports around the van now: the figures in force, a little noisy."""
        assert self.conditions is not None and van.conditions_noise is not None
        now, rng = self.engine.now, van.conditions_noise
        c = self.conditions.at(now, at_pos)
        van.conditions_seq += 1
        d = van.driver
        record = {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                       f"kuailv-sim:{self.config.seed}:{d.id}:conditions:{van.conditions_seq}")),
            "driver_id": d.id, "vehicle_id": d.vehicle_id, "event_time": now, "producer": CONDITIONS_PRODUCER,
            "traffic_index": round(max(1.0, c.traffic_index * (1 + rng.gauss(0, 0.03))), 3),
            "rain_mm_h": round(max(0.0, c.rain_mm_h * (1 + rng.gauss(0, 0.1))), 1),
            "temperature_c": round(c.temperature_c + rng.gauss(0, 0.3), 1),
        }
        return Telemetry(now, "RoadConditions", d.id, record)
