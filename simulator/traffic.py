"""The deterministic traffic generator: orders, van GPS and cold-chain sensors of one city.

``simulate(config)`` yields ``Command`` and ``Telemetry`` steps (GPS, road conditions: weather and
traffic from ``simulator.conditions``, cold-chain sensors) lazily, in
non-decreasing event time; the same config always gives the same steps. It
does no I/O and reads no clock: a runner maps event time to wall time
(``wall_delay``), sends commands to the command side and telemetry to Kafka.
``event_log(config)`` is the same run as a pure event log, for tests and
benchmarks that bypass the command side.

    >>> steps = list(simulate(SimulationConfig(seed=7, orders=5)))
    >>> steps[0].name, steps[0].order_id
    ('create', 'KL202606010001')
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from simulator.city import City, Restaurant, build_city
from simulator.config import COMMAND_EVENTS, PRODUCERS, Command, SimulationConfig, Step, Telemetry
from simulator.engine import Engine, Process
from simulator.events import event_id
from simulator.fleet import Fleet
from simulator.orders import beijing_date, order_id_for, plan_order, warehouse_flow
from simulator.sensors import SensorChannel, SensorDevice

__all__ = [
    "COMMAND_EVENTS", "DERIVED_FIELDS", "PRODUCERS", "Command", "SimulationConfig", "Step", "Telemetry",
    "city_for", "command_kwargs", "command_to_event", "event_log", "iter_event_log", "sensor_devices", "simulate",
    "wall_delay",
]

Record = tuple[str, dict[str, Any]]


def city_for(config: SimulationConfig) -> City:
    """The city a run of ``config`` takes place in (same seed, same city)."""
    return build_city(config.seed, config.n_warehouses, config.n_restaurants, config.n_drivers)


def sensor_devices(city: City) -> list[SensorDevice]:
    """One device per warehouse room and one per van's chilled compartment."""
    devices = [SensorDevice(device_id, compartment, warehouse_id=wh.id)
               for wh in city.warehouses for device_id, compartment in wh.rooms]
    devices += [SensorDevice(d.sensor_id, "CHILLED", vehicle_id=d.vehicle_id) for d in city.drivers]
    return devices


def simulate(config: SimulationConfig, *, stock: bool = False) -> Iterator[Step]:
    """All steps of a run, lazily, in non-decreasing ``at``. Ends when the last order is settled.
    ``stock``: also the warehouses' ``StockMovement`` records (``simulator.inventory.with_stock``)."""
    city = city_for(config)
    engine = Engine(config.start)
    fleet = Fleet(engine, config, city)
    engine.spawn(config.start, _arrivals(engine, fleet, city, config))
    interval = max(1, round(config.sensor_interval_s * 1000))
    phases = random.Random(f"kuailv-sensor-phase:{config.seed}")
    for device in sensor_devices(city):
        channel = SensorChannel(device, config.seed, interval, config.sensor_excursion_per_hour)
        engine.spawn(config.start + phases.randrange(interval), _sensor(engine, channel, interval), work=False)
    if stock:
        from simulator.inventory import with_stock

        yield from with_stock(engine.run(), config, city)
        return
    yield from engine.run()


def _arrivals(engine: Engine, fleet: Fleet, city: City, config: SimulationConfig) -> Process:
    """Poisson order arrivals; ids restart at 0001 on each Beijing calendar day.

    Customers come from a shuffled deck: every restaurant orders once before any orders again.
    """
    rng = random.Random(f"kuailv-arrivals:{config.seed}")
    deck: list[Restaurant] = []
    width = max(4, len(str(config.orders)))
    mean_gap_ms = 3_600_000 / config.orders_per_hour
    day, day_seq = "", 0
    for seq in range(1, config.orders + 1):
        if seq > 1:
            yield engine.now + int(rng.expovariate(1.0 / mean_gap_ms))
        date = beijing_date(engine.now)
        day, day_seq = date, (day_seq + 1 if date == day else 1)
        if not deck:
            deck = list(city.restaurants)
            rng.shuffle(deck)
        order = plan_order(config, city, seq, order_id_for(date, day_seq, width), engine.now, deck.pop())
        engine.spawn(engine.now, warehouse_flow(engine, fleet, order, config))


def _sensor(engine: Engine, channel: SensorChannel, interval_ms: int) -> Process:
    while not engine.done:
        yield Telemetry(engine.now, "SensorReading", channel.device.device_id, channel.reading(engine.now))
        yield engine.now + interval_ms


def command_to_event(cmd: Command, version: int) -> Record:
    """The Avro order event a command records, as the command side would (envelope + payload)."""
    record = {
        "event_id": event_id(cmd.order_id, version, f"{cmd.name}@{cmd.at}"),
        "order_id": cmd.order_id, "version": version, "event_time": cmd.at, "producer": PRODUCERS[cmd.name],
        **cmd.payload,
    }
    return COMMAND_EVENTS[cmd.name], record


# Payload fields the command side derives itself rather than taking as arguments.
DERIVED_FIELDS: dict[str, tuple[str, ...]] = {"create": ("total_cents",)}


def command_kwargs(cmd: Command) -> dict[str, Any]:
    """Keyword arguments for ``OrderService.execute(cmd.name, cmd.order_id, **kwargs)``:
    ``at``, ``producer`` and the payload minus fields the aggregate derives (``total_cents``)."""
    derived = DERIVED_FIELDS.get(cmd.name, ())
    return {"at": cmd.at, "producer": PRODUCERS[cmd.name],
            **{k: v for k, v in cmd.payload.items() if k not in derived}}


def iter_event_log(config: SimulationConfig) -> Iterator[Record]:
    """``simulate`` as ``(record_type, record)`` pairs: order events (versions 1, 2, ... per order,
    in command order) interleaved with GpsPing / RoadConditions / SensorReading records, in event-time order."""
    versions: dict[str, int] = {}
    for step in simulate(config):
        if isinstance(step, Command):
            version = versions.get(step.order_id, 0) + 1
            versions[step.order_id] = version
            yield command_to_event(step, version)
        else:
            yield step.record_type, step.record


def event_log(config: SimulationConfig) -> list[Record]:
    """The complete order-event + telemetry log of a run, in event-time order."""
    return list(iter_event_log(config))


def wall_delay(prev_at: int, at: int, speedup: float) -> float:
    """Seconds of wall time between two event times (ms) when replaying ``speedup`` times faster.

    ``speedup=math.inf`` means as fast as possible (0 s). Never negative.
    """
    if not speedup > 0:
        raise ValueError(f"speedup must be > 0, got {speedup}")
    if math.isinf(speedup):
        return 0.0
    return max(0.0, (at - prev_at) / 1000.0 / speedup)
