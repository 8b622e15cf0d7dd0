"""Replenishment maths: a demand forecast over daily history and the reorder-point policy. Pure.

The forecast of one warehouse x SKU is the mean and the sample standard deviation of its demand
over the last ``history_days`` complete days (a day without a movement counts as zero once the
history has begun). The policy is continuous review with a reorder point and an order-up-to level,
(s, S)::

    lead-time demand  LTD = mean * L                       L: supplier lead time, days
    safety stock      SS  = z(service level) * std * sqrt(L)
    reorder point     s   = LTD + SS
    order-up-to       S   = s + mean * R                   R: the days one order should cover
    suggested         Q   = S - position, rounded up to the unit's step, when position <= s (else 0)

``z`` is the standard normal quantile of the cycle service level (``statistics.NormalDist``): the
probability that the stock lasts through a lead time. ``position`` is on hand plus on order.
The projection (``projections.stock``) and the evaluation (``models.stock_evaluation``) both call
``plan``, so what the stream suggests is what the evaluation tested. See ``docs/stock.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

DAY_MS = 86_400_000
BEIJING_MS = 8 * 3_600_000  # the business day is the Beijing calendar day


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """The knobs of the policy (the ``low-stock`` rule's params in ``config/alert_rules.v1.json``)."""

    service_level: float = 0.98
    lead_time_days: float = 1.0
    review_days: float = 1.0
    history_days: int = 28
    min_history_days: int = 7

    def __post_init__(self) -> None:
        if not 0.5 <= self.service_level < 1.0:
            raise ValueError(f"service_level must be in [0.5, 1), got {self.service_level}")
        if self.lead_time_days <= 0 or self.review_days <= 0:
            raise ValueError(f"lead_time_days and review_days must be > 0, got {self.lead_time_days}, "
                             f"{self.review_days}")
        if not 1 <= self.min_history_days <= self.history_days:
            raise ValueError(f"need 1 <= min_history_days <= history_days, got {self.min_history_days}, "
                             f"{self.history_days}")


@dataclass(frozen=True, slots=True)
class Forecast:
    mean: float  # units per day
    std: float  # of daily demand
    days: int  # complete days it was computed from


@dataclass(frozen=True, slots=True)
class Plan:
    forecast: Forecast
    lead_time_demand: float
    safety_stock: float
    reorder_point: float
    order_up_to: float


def business_day(at_ms: int) -> int:
    """The Beijing calendar day of an epoch-ms instant, as days since 1970-01-01 (Beijing)."""
    return (at_ms + BEIJING_MS) // DAY_MS


def day_start_ms(day: int) -> int:
    """Epoch ms of 00:00 Beijing of ``business_day`` number ``day``."""
    return day * DAY_MS - BEIJING_MS


def forecast(daily: Sequence[float], window: int) -> Forecast | None:
    """Mean and sample std of the last ``window`` values of ``daily`` (oldest first); None without history."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    recent = list(daily)[-window:]
    if not recent:
        return None
    return Forecast(fmean(recent), stdev(recent) if len(recent) > 1 else 0.0, len(recent))


def z_score(service_level: float) -> float:
    """The standard normal quantile of ``service_level`` (0.98 -> 2.054)."""
    if not 0.0 < service_level < 1.0:
        raise ValueError(f"service_level must be in (0, 1), got {service_level}")
    return NormalDist().inv_cdf(service_level)


def plan(fc: Forecast, params: PolicyParams) -> Plan:
    """Reorder point and order-up-to level of a forecast under ``params``."""
    lead = params.lead_time_days
    ltd = fc.mean * lead
    safety = max(0.0, z_score(params.service_level)) * fc.std * math.sqrt(lead)
    rop = ltd + safety
    return Plan(fc, ltd, safety, rop, rop + fc.mean * params.review_days)


def plan_from_history(daily: Sequence[float], params: PolicyParams) -> Plan | None:
    """``plan`` over the last ``history_days`` of ``daily``; None with fewer than ``min_history_days``."""
    if len(daily) < params.min_history_days:
        return None
    fc = forecast(daily, params.history_days)
    return None if fc is None else plan(fc, params)


def round_up(quantity: float, unit: str) -> float:
    """``quantity`` rounded up to what can be ordered: whole pieces, half kilos."""
    if quantity <= 0:
        return 0.0
    if unit == "PIECE":
        return float(math.ceil(quantity - 1e-9))
    return math.ceil(quantity * 2 - 1e-9) / 2


def suggested_quantity(p: Plan, position: float, unit: str) -> float:
    """What to order now: up to the order-up-to level when ``position`` (on hand + on order) is at or
    below the reorder point, else nothing."""
    if position > p.reorder_point:
        return 0.0
    return round_up(p.order_up_to - position, unit)
