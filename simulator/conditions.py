"""Deterministic weather and traffic of the simulated city: a pure function of (seed, time, position).

``CityConditions(seed).at(t, pos)`` gives the ``Conditions`` in force at epoch ms ``t`` near ``pos``:

* ``traffic_index`` (travel time / free-flow travel time, 1.0 = free flow): a weekday rush-hour profile in
  Beijing time (UTC+8; morning peak ~08:15, evening peak ~18:00, a lunchtime bump), weaker on weekends, scaled
  by a random level per day, busier towards the city centre, plus random *incidents* (a crash, road works)
  that congest a few kilometres around them for 30-150 minutes, and rain (more cars, slower driving);
* ``rain_mm_h``: 0-2 rain episodes on some days, each rising to a peak intensity and easing off;
* ``temperature_c``: a seasonal level, a daily cycle (coolest at dawn, warmest mid-afternoon), cooler in rain.

``slowdown(c)`` is the factor a leg's free-flow segment speeds are divided by: the traffic index, plus a
drag of wet roads. Everything random is drawn per Beijing day from ``random.Random(f"kuailv-conditions:
{seed}:...")`` streams of its own, so enabling conditions leaves every other draw of a run unchanged, and a
query for one moment never depends on which moments were asked before.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

from simulator.geo import Point, haversine_m

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
BEIJING_OFFSET_MS = 8 * HOUR_MS
CENTRE: Point = (39.9087, 116.3975)  # Tiananmen
RAIN_DRAG_PER_MM = 0.012  # extra slowdown per mm/h of rain (wet roads, poor sight), on top of the index
MAX_RAIN_DRAG = 0.35


@dataclass(frozen=True, slots=True)
class Conditions:
    traffic_index: float
    rain_mm_h: float
    temperature_c: float


@dataclass(frozen=True, slots=True)
class _Incident:
    start: int  # epoch ms
    end: int
    where: Point
    radius_m: float
    extra: float  # added to the traffic index at its centre, at its worst


@dataclass(frozen=True, slots=True)
class _Rain:
    start: int
    end: int
    peak_mm_h: float


@dataclass(frozen=True, slots=True)
class _Day:
    weekend: bool
    level: float  # multiplies the rush-hour excess over free flow
    incidents: tuple[_Incident, ...]
    rains: tuple[_Rain, ...]
    temp_mean: float
    temp_swing: float


def beijing_hour(at: int) -> float:
    """Hour of the Beijing day (0.0-24.0) of epoch ms ``at``."""
    return ((at + BEIJING_OFFSET_MS) % DAY_MS) / HOUR_MS


def beijing_day(at: int) -> int:
    """Days since the epoch, counted in Beijing time."""
    return (at + BEIJING_OFFSET_MS) // DAY_MS


def beijing_weekday(at: int) -> int:
    """Monday = 0 .. Sunday = 6, in Beijing time (1970-01-01 was a Thursday)."""
    return (beijing_day(at) + 3) % 7


def rush_profile(hour: float, weekend: bool) -> float:
    """Typical congestion excess over free flow (index - 1) at a Beijing hour, before the day's level."""
    if weekend:
        return (0.1 + 0.3 * math.exp(-(((hour - 11.5) / 2.5) ** 2)) + 0.3 * math.exp(-(((hour - 17.5) / 2.0) ** 2))
                ) * _awake(hour)
    morning = 0.7 * math.exp(-(((hour - 8.25) / 1.1) ** 2))
    evening = 0.8 * math.exp(-(((hour - 18.0) / 1.4) ** 2))
    lunch = 0.2 * math.exp(-(((hour - 12.5) / 1.5) ** 2))
    return (0.12 + morning + evening + lunch) * _awake(hour)


def _awake(hour: float) -> float:
    """~0 between midnight and 5 am, ~1 from 7 am to 10 pm."""
    rise = 1 / (1 + math.exp(-(hour - 6.0) * 2.5))
    fall = 1 / (1 + math.exp((hour - 22.5) * 1.5))
    return rise * fall


class CityConditions:
    """Weather and traffic of the city of ``seed``; ``traffic_scale`` scales congestion (0: always free flow)
    and ``rain_scale`` rain intensity (0: always dry)."""

    def __init__(self, seed: int, traffic_scale: float = 1.0, rain_scale: float = 1.0) -> None:
        if not (traffic_scale >= 0 and rain_scale >= 0):
            raise ValueError(f"traffic_scale {traffic_scale} and rain_scale {rain_scale} must be >= 0")
        self.seed = seed
        self.traffic_scale = traffic_scale
        self.rain_scale = rain_scale
        self._day = functools.lru_cache(maxsize=64)(self._draw_day)

    def _draw_day(self, day: int) -> _Day:
        rng = random.Random(f"kuailv-conditions:{self.seed}:day:{day}")
        start = day * DAY_MS - BEIJING_OFFSET_MS  # Beijing midnight, epoch ms
        weekend = (day + 3) % 7 >= 5
        level = rng.uniform(0.75, 1.25)
        incidents = []
        for _ in range(_poisson(rng, 5.0)):
            t0 = start + int(rng.uniform(5, 23) * HOUR_MS)
            where = (rng.uniform(39.78, 40.02), rng.uniform(116.23, 116.57))
            incidents.append(_Incident(t0, t0 + int(rng.uniform(30, 150) * 60_000), where, rng.uniform(2500, 6000),
                                       rng.uniform(0.3, 1.0)))
        rains = []
        for _ in range(rng.choices((0, 1, 2), weights=(60, 28, 12))[0]):
            t0 = start + int(rng.uniform(0, 22) * HOUR_MS)
            rains.append(_Rain(t0, t0 + int(rng.uniform(1, 5) * HOUR_MS), rng.expovariate(1 / 8.0) + 1.0))
        season = math.cos(2 * math.pi * (((day + 3) % 365) - 200) / 365)  # warmest mid-July
        return _Day(weekend, level, tuple(incidents), tuple(rains), 13 + 14 * season + rng.gauss(0, 2.5),
                    rng.uniform(3, 7))

    def rain_mm_h(self, at: int) -> float:
        """Rain intensity at ``at`` (the same all over the city)."""
        total = 0.0
        day = beijing_day(at)
        for d in (day - 1, day):  # an episode may run over midnight
            for r in self._day(d).rains:
                if r.start <= at < r.end:
                    f = (at - r.start) / (r.end - r.start)
                    total += r.peak_mm_h * math.sin(math.pi * f) ** 0.7
        return total * self.rain_scale

    def at(self, at: int, pos: Point | None = None) -> Conditions:
        """The conditions in force at epoch ms ``at`` near ``pos`` (the city-wide figure when None)."""
        day = beijing_day(at)
        today = self._day(day)
        hour = beijing_hour(at)
        centre = 1.0 if pos is None else 1.15 - 0.35 * min(1.0, haversine_m(pos, CENTRE) / 15_000)
        excess = rush_profile(hour, today.weekend) * today.level * centre
        if pos is not None:
            for d in (day - 1, day):
                for inc in self._day(d).incidents:
                    if inc.start <= at < inc.end:
                        dist = haversine_m(pos, inc.where)
                        if dist < inc.radius_m:
                            f = (at - inc.start) / (inc.end - inc.start)
                            excess += inc.extra * (1 - dist / inc.radius_m) * min(1.0, 4 * f, 4 * (1 - f))
        rain = self.rain_mm_h(at)
        excess += min(0.5, 0.025 * rain)
        temp = today.temp_mean + today.temp_swing * math.sin(2 * math.pi * (hour - 9.0) / 24) - min(4.0, 0.3 * rain)
        return Conditions(1.0 + excess * self.traffic_scale, rain, temp)


def slowdown(c: Conditions) -> float:
    """Free-flow travel time x this = the time a leg takes under ``c``."""
    return c.traffic_index * (1.0 + min(MAX_RAIN_DRAG, RAIN_DRAG_PER_MM * c.rain_mm_h))


def _poisson(rng: random.Random, mean: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p < limit:
            return n
        n += 1
