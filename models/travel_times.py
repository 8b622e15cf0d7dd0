"""Travel times learnt from history: the ``TravelTimes`` that ``projections.routing.plan_stops`` plans with.

From an event log (``(record_type, record)`` pairs, e.g. ``simulator.traffic.event_log``) the vans'
GpsPing tracks are cut into drives (a drive ends at a standing fix followed by a silence), and a
drive that ends where, shortly after, its driver hands an order over (OrderDelivered,
DeliveryRefused or a GOODS_DAMAGED ExceptionReported near the drive's end) is a leg to a customer.
From those legs: the road factor (median of driven / straight-line distance), a speed factor per
straight-line distance band and a speed per Beijing hour of departure (medians, so a leg stuck in
a jam or a GPS dead zone does not drag them). Pure function of the log: no clock, no I/O; the result
is a plain value (``TravelTimes.to_json`` / ``from_json``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from projections.geo import haversine_m
from projections.routing import DEFAULT_SPEED_KMH, TravelTimes, beijing_hour

MINUTE_MS = 60_000
STOP_GAP_MS = 60_000  # a standing fix followed by this long without a fix ends a drive
DOOR_WITHIN_MS = 20 * MINUTE_MS  # the hand-over comes at most this long after the drive ends...
DOOR_RADIUS_M = 250.0  # ...this close to where it ended
MIN_STRAIGHT_M = 200.0  # shorter legs say more about GPS noise than about speed
MIN_LEGS = 8  # an hour or band with fewer legs takes the overall figure
BAND_EDGES_M = (1500.0, 4000.0)

Record = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Leg:
    """One observed drive of ``driver_id`` to the customer of ``order_id``: first and last fix of the drive."""

    driver_id: str
    order_id: str
    depart: int  # epoch ms
    arrive: int
    start: tuple[float, float]
    end: tuple[float, float]
    straight_m: float
    driven_m: float  # sum of fix-to-fix distances (a GPS dead zone counts as a straight line)

    @property
    def duration_s(self) -> float:
        return (self.arrive - self.depart) / 1000


@dataclass(slots=True)
class _Drive:
    fixes: list[tuple[int, float, float]]
    driven_m: float = 0.0


def _drives(pings: Sequence[tuple[int, float, float, float]], stop_gap_ms: int) -> list[_Drive]:
    """One driver's fixes ``(at, lat, lng, speed_kmh)`` in time order, cut into drives."""
    drives: list[_Drive] = []
    current: _Drive | None = None
    for i, (at, lat, lng, speed) in enumerate(pings):
        if current is None:
            current = _Drive([(at, lat, lng)])
        else:
            _, plat, plng = current.fixes[-1]
            current.driven_m += haversine_m(plat, plng, lat, lng)
            current.fixes.append((at, lat, lng))
        following = pings[i + 1][0] if i + 1 < len(pings) else None
        if speed <= 0 and (following is None or following - at > stop_gap_ms):
            drives.append(current)
            current = None
    return drives  # a drive still under way at the end of the log has no hand-over: dropped


def customer_legs(log: Iterable[Record], *, stop_gap_ms: int = STOP_GAP_MS, door_within_ms: int = DOOR_WITHIN_MS,
                  door_radius_m: float = DOOR_RADIUS_M) -> list[Leg]:
    """The legs to customers in ``log``, ordered by (departure, driver)."""
    pings: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    carrier: dict[str, str] = {}  # order id -> driver of its latest dispatch
    doors: list[tuple[int, str, str, float, float]] = []  # (at, order, driver, lat, lng)
    for record_type, r in log:
        if record_type == "GpsPing":
            pings[r["driver_id"]].append((r["event_time"], r["lat"], r["lng"], r["speed_kmh"]))
        elif record_type == "OrderDispatched":
            carrier[r["order_id"]] = r["driver_id"]
        elif record_type in ("OrderDelivered", "DeliveryRefused") or (
                record_type == "ExceptionReported" and r.get("reason_code") == "GOODS_DAMAGED"):
            driver, where = carrier.get(r["order_id"]), r.get("location")
            if driver is not None and where is not None:
                doors.append((r["event_time"], r["order_id"], driver, where["lat"], where["lng"]))
    ends: dict[str, list[_Drive]] = {}
    for driver, fixes in pings.items():
        fixes.sort(key=lambda f: f[0])
        ends[driver] = _drives(fixes, stop_gap_ms)
    legs: list[Leg] = []
    used: set[tuple[str, int]] = set()
    for at, order_id, driver, lat, lng in doors:
        before = [d for d in ends.get(driver, ()) if 0 <= at - d.fixes[-1][0] <= door_within_ms]
        if not before:
            continue
        drive = max(before, key=lambda d: d.fixes[-1][0])
        (depart, slat, slng), (arrive, elat, elng) = drive.fixes[0], drive.fixes[-1]
        if (driver, arrive) in used or haversine_m(elat, elng, lat, lng) > door_radius_m or arrive <= depart:
            continue
        used.add((driver, arrive))
        legs.append(Leg(driver, order_id, depart, arrive, (slat, slng), (elat, elng),
                        haversine_m(slat, slng, elat, elng), drive.driven_m))
    legs.sort(key=lambda leg: (leg.depart, leg.driver_id))
    return legs


def fit_travel_times(legs: Sequence[Leg], *, band_edges_m: Sequence[float] = BAND_EDGES_M,
                     min_legs: int = MIN_LEGS) -> TravelTimes:
    """``TravelTimes`` from observed legs; with too few legs, the defaults (``TravelTimes()``).

    A leg's effective speed is ``straight × road_factor / duration``: the speed that makes the model's
    time for that leg come out right, so the fitted model predicts durations, not GPS speeds.
    """
    usable = [leg for leg in legs if leg.straight_m >= MIN_STRAIGHT_M and leg.duration_s > 0]
    if len(usable) < min_legs:
        return TravelTimes()
    road_factor = max(1.0, statistics.median(leg.driven_m / leg.straight_m for leg in usable))
    shape = TravelTimes(road_factor=road_factor, band_edges_m=tuple(band_edges_m),
                        band_factors=(1.0,) * (len(band_edges_m) + 1))
    speed = [leg.straight_m * road_factor / leg.duration_s * 3.6 for leg in usable]  # km/h, per usable leg
    overall = statistics.median(speed)
    by_band: dict[int, list[float]] = defaultdict(list)
    for leg, v in zip(usable, speed, strict=True):
        by_band[shape.band(leg.straight_m)].append(v)
    factors = tuple(statistics.median(by_band[b]) / overall if len(by_band[b]) >= min_legs else 1.0
                    for b in range(len(band_edges_m) + 1))
    by_hour: dict[int, list[float]] = defaultdict(list)
    for leg, v in zip(usable, speed, strict=True):
        by_hour[beijing_hour(leg.depart)].append(v / factors[shape.band(leg.straight_m)])
    base = statistics.median(v for vs in by_hour.values() for v in vs)
    hourly = tuple(statistics.median(by_hour[h]) if len(by_hour[h]) >= min_legs else base for h in range(24))
    return TravelTimes(road_factor=road_factor, speed_kmh=hourly, band_edges_m=tuple(band_edges_m),
                       band_factors=factors)


def learn_travel_times(log: Iterable[Record], **kwargs: Any) -> TravelTimes:
    """``fit_travel_times(customer_legs(log))``; ``kwargs`` go to ``fit_travel_times``."""
    return fit_travel_times(customer_legs(log), **kwargs)


def leg_errors(legs: Sequence[Leg], travel: TravelTimes) -> dict[str, float]:
    """How well ``travel`` predicts the legs' durations (s): mean and median absolute error, mean error
    (bias: > 0 predicts too long), over legs of at least ``MIN_STRAIGHT_M``."""
    errors = [travel.seconds(leg.start, leg.end, leg.depart) - leg.duration_s
              for leg in legs if leg.straight_m >= MIN_STRAIGHT_M]
    if not errors:
        raise ValueError("leg_errors: no leg of at least MIN_STRAIGHT_M to score")
    absolute = [abs(e) for e in errors]
    return {"legs": len(errors), "mae_s": statistics.fmean(absolute), "median_ae_s": statistics.median(absolute),
            "bias_s": statistics.fmean(errors)}


__all__ = [
    "DEFAULT_SPEED_KMH",
    "Leg",
    "TravelTimes",
    "customer_legs",
    "fit_travel_times",
    "learn_travel_times",
    "leg_errors",
]
