"""What the traffic generator is configured with and what it yields.

``SimulationConfig`` holds every knob (all with realistic defaults); the
generator yields ``Step`` items: a ``Command`` for the order command side or a
``Telemetry`` record for the GPS / sensor topics.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from projections.order_status import COMMAND_EVENTS
from simulator.events import T0

if TYPE_CHECKING:
    from projections.routing import TravelTimes

__all__ = ["COMMAND_EVENTS"]  # re-exported: the simulator's callers use it with Command

# Command verb -> the service or device that produces the event.
PRODUCERS: dict[str, str] = {
    "create": "order-service", "confirm_payment": "payment-gateway", "check_stock": "wms",
    "start_picking": "wms", "weigh_line": "scale-gateway", "pack": "wms", "dispatch": "dispatch",
    "report_exception": "driver-app", "deliver": "driver-app", "refuse": "driver-app",
    "start_return": "order-service", "complete_return": "wms", "open_claim": "order-service",
    "settle_claim": "order-service", "cancel": "order-service",
}


@dataclass(frozen=True, slots=True)
class Command:
    """An order command at event time ``at``; ``payload`` = the event's fields minus the envelope."""

    at: int
    order_id: str
    name: str
    payload: dict[str, Any]

    @property
    def event_type(self) -> str:
        return COMMAND_EVENTS[self.name]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A complete GpsPing or SensorReading record; ``key`` is the Kafka key (driver / device id)."""

    at: int
    record_type: str
    key: str
    record: dict[str, Any]


Step = Command | Telemetry
STOP_ORDERS = ("nearest", "planned")


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    seed: int = 42
    orders: int = 1000
    start: int = T0  # epoch ms: event time of the first order
    orders_per_hour: float = 60.0  # Poisson arrivals
    n_warehouses: int = 3
    n_restaurants: int = 150
    n_drivers: int = 30
    max_stops: int = 6  # orders per van trip
    dispatch_hold_s: float = 900.0  # a ready order waits at most this long for a fuller van
    gps_interval_s: float = 5.0
    sensor_interval_s: float = 30.0
    sensor_excursion_per_hour: float = 0.05  # per device: door open / compressor failure
    # Order fates (per order unless noted); the rest is the happy path.
    p_unpaid: float = 0.01  # never paid -> cancelled by the system
    p_cancel: float = 0.02  # customer cancels after paying, before dispatch
    p_out_of_stock: float = 0.005  # every line short -> OUT_OF_STOCK
    p_partial_shortage: float = 0.06  # some lines short, the rest is delivered
    p_scale_under: float = 0.03  # per weighed line: 5-10 % under weight
    p_accident: float = 0.004  # per driving leg to a customer: TRAFFIC_ACCIDENT, another van takes over
    p_refused: float = 0.02  # customer refuses at the door -> return
    p_damaged: float = 0.015  # goods damaged -> exception, claim opened and settled
    p_return_after_sign: float = 0.015  # signed, returned later
    # Per driving leg to a customer, drawn from their own random stream (the rest of the day is unchanged):
    p_traffic_jam: float = 0.01  # the van stands still 40-80 min on the way: its stops arrive late
    p_gps_dropout: float = 0.01  # the driver app sends nothing for 12-20 min while driving (a dead zone)
    # A van's stops in visiting order: "nearest" (nearest neighbour from the depot) or "planned"
    # (projections.routing.plan_stops with ``route_travel_times``, e.g. learnt from an earlier history by
    # models.travel_times; None: its defaults). The orders on each van are the same either way.
    stop_order: str = "nearest"
    route_travel_times: TravelTimes | None = None
    # Weather and traffic (simulator.conditions): they slow every leg and vans report them as RoadConditions.
    conditions: bool = True  # False: free flow, dry, no RoadConditions records
    conditions_interval_s: float = 300.0  # a driving van reports RoadConditions at departure and this often
    traffic_scale: float = 1.0  # scales congestion over free flow (0: free flow all day)
    rain_scale: float = 1.0  # scales rain intensity (0: always dry)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be a probability in [0, 1], got {value}")
        if self.p_unpaid + self.p_cancel + self.p_out_of_stock > 1.0:
            raise ValueError("p_unpaid + p_cancel + p_out_of_stock must not exceed 1")
        if self.p_refused + self.p_damaged + self.p_return_after_sign > 1.0:
            raise ValueError("p_refused + p_damaged + p_return_after_sign must not exceed 1")
        if self.orders < 0 or self.orders_per_hour <= 0 or self.max_stops < 1:
            raise ValueError("orders >= 0, orders_per_hour > 0 and max_stops >= 1 are required")
        if self.gps_interval_s <= 0 or self.sensor_interval_s <= 0 or self.dispatch_hold_s < 0:
            raise ValueError("gps_interval_s and sensor_interval_s must be > 0, dispatch_hold_s >= 0")
        if self.conditions_interval_s <= 0 or self.traffic_scale < 0 or self.rain_scale < 0:
            raise ValueError("conditions_interval_s must be > 0, traffic_scale and rain_scale >= 0")
        if self.n_drivers < 2 * self.n_warehouses:
            raise ValueError("n_drivers must be >= 2 per warehouse (a crashed van is relieved by another)")
        if self.stop_order not in STOP_ORDERS:
            raise ValueError(f"stop_order must be one of {STOP_ORDERS}, got {self.stop_order!r}")
