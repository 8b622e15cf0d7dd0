"""The city's traffic mix and the load schedule, as arithmetic. Pure: no I/O, no clock.

At the issue's 5,000 events/s (the seed's city: 20,000 vans, a GPS fix every 10 s):

    GPS           20,000 vans / 10 s                                   = 2,000 /s  (40 %)
    sensors       20,000 refrigerated vans x 2 compartments / 15 s     = 2,667 /s  (53 %)
    orders+stock  the rest                                             =   333 /s  ( 7 %)
                  an order is 10 order events + 3 stock picks = 13 records
                  -> 333 / 13 = 25.6 new orders/s (92,000 an hour: a morning peak about 2.7x the day's
                  average of docs/scaling.md): 256 order events/s + 77 stock movements/s

Another ``--rate`` scales the whole city (vans, devices, orders) by rate / 5,000, so the shares stay.
The burst runs the city's clock ``burst_factor`` times faster for ``burst_s`` of wall time: every
stream at ``burst_factor`` x its rate (a van then pings every 10 / 3 s), event time still = wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_RATE = 5_000.0  # events/s of the seed's city
BASE_VANS = 20_000
GPS_EVERY_S = 10.0
REEFER_SHARE = 1.0  # a fresh-produce fleet: every van is refrigerated
COMPARTMENTS = 2  # CHILLED and FROZEN, one device each
SENSOR_EVERY_S = 15.0
ORDER_EVENTS_PER_ORDER = 10  # created, paid, stock checked, picking, 3 lines weighed, packed, dispatched, delivered
STOCK_PER_ORDER = 3  # one PICK movement per line


@dataclass(frozen=True, slots=True)
class Mix:
    """Rates of one city, events per second of city time."""

    vans: int
    reefer_vans: int
    gps_per_s: float
    sensors_per_s: float
    orders_per_s: float  # new orders (stories) per second
    order_events_per_s: float
    stock_per_s: float

    @property
    def total_per_s(self) -> float:
        return self.gps_per_s + self.sensors_per_s + self.order_events_per_s + self.stock_per_s

    def shares(self) -> dict[str, float]:
        t = self.total_per_s
        return {"gps": self.gps_per_s / t, "sensors": self.sensors_per_s / t,
                "order_events": self.order_events_per_s / t, "stock": self.stock_per_s / t}


def city_mix(rate: float = BASE_RATE) -> Mix:
    """The mix at ``rate`` events/s: the seed's city scaled by rate / 5,000."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 events/s, got {rate}")
    scale = rate / BASE_RATE
    vans = max(1, round(BASE_VANS * scale))
    reefer = max(1, round(vans * REEFER_SHARE))
    gps = vans / GPS_EVERY_S
    sensors = reefer * COMPARTMENTS / SENSOR_EVERY_S
    rest = max(rate - gps - sensors, 0.0)
    orders = rest / (ORDER_EVENTS_PER_ORDER + STOCK_PER_ORDER)
    return Mix(vans=vans, reefer_vans=reefer, gps_per_s=gps, sensors_per_s=sensors, orders_per_s=orders,
               order_events_per_s=orders * ORDER_EVENTS_PER_ORDER, stock_per_s=orders * STOCK_PER_ORDER)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Wall time of the run: ``steady_s`` at the base rate, then ``burst_s`` at ``burst_factor`` x."""

    steady_s: float
    burst_s: float
    burst_factor: float

    @property
    def wall_s(self) -> float:
        return self.steady_s + self.burst_s

    @property
    def city_s(self) -> float:
        """Seconds of city time the run covers (the burst runs the city's clock faster)."""
        return self.steady_s + self.burst_s * self.burst_factor

    def wall_at(self, city_t: float) -> float:
        """Wall seconds from the start at which city time ``city_t`` is produced."""
        if city_t <= self.steady_s:
            return city_t
        return self.steady_s + (city_t - self.steady_s) / self.burst_factor

    def phase(self, wall_t: float) -> str:
        if wall_t < self.steady_s:
            return "steady"
        return "burst" if wall_t < self.wall_s else "drain"

    def expected_events(self, mix: Mix) -> float:
        return mix.total_per_s * self.city_s
