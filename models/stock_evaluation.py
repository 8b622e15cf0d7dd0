"""Does following the replenishment suggestions beat the current policy? A closed-loop simulation. Pure.

    .venv/bin/python -m trainer.evaluations stock [--seed 42] [--weeks 4] [--seeds 3]

The same seeded demand (``simulator.inventory.order_demand``: the simulator's orders without the fleet,
every warehouse x SKU) runs twice from the same opening stock, once per policy, and here the stock
decides what is short (a line gets what is on hand):

* **current**: ``simulator.inventory.BuyerPolicy``, a fixed minimum (expected lead-time demand, no safety
  stock) and a fixed order quantity (two days of expected demand), with the generator's true mean;
* **suggested**: ``SuggestedPolicy``, the stream's replenishment suggestions: re-planned each business day
  from the last 28 days' demand (``models.replenishment.plan_from_history``, the ``low-stock`` rule's
  params), order up to the order-up-to level when stock + on order is below the reorder point; the
  current policy until 7 days of history exist.

Purchase orders arrive one lead time later. The first ``warmup_days`` are not measured. The table:
stock-out events (a warehouse x SKU that could not fill a line, counted once until its next receipt),
order lines short, fill rate (value filled / value asked, at sales prices), average stock held (value at
sales prices, time-weighted) and days of stock (stock held / demand per day). ``stock_report_section``
gives it to the model report (``models/report.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from models.replenishment import DAY_MS, Plan, PolicyParams, business_day, plan_from_history, round_up
from simulator.catalogue import BY_SKU, CATALOGUE
from simulator.city import build_city
from simulator.config import SimulationConfig
from simulator.inventory import BuyerPolicy, Demand, Key, StockBook, expected_daily_demand, order_demand


class SuggestedPolicy:
    """Order up to S when stock + on order is below s, both re-planned daily from the demand history."""

    name = "suggested (reorder point + safety stock)"

    def __init__(self, params: PolicyParams, fallback: BuyerPolicy, first_day: int) -> None:
        self.params = params
        self.fallback = fallback
        self.first_day = first_day
        self.history: dict[Key, dict[int, float]] = {}
        self._plans: dict[Key, tuple[int, Plan | None]] = {}

    def initial(self, key: Key) -> float:
        return self.fallback.initial(key)

    def observe(self, key: Key, day: int, quantity: float) -> None:
        days = self.history.setdefault(key, {})
        days[day] = days.get(day, 0.0) + quantity

    def plan(self, key: Key, day: int) -> Plan | None:
        cached = self._plans.get(key)
        if cached is not None and cached[0] == day:
            return cached[1]
        days = self.history.get(key, {})
        start = max(self.first_day, day - self.params.history_days)
        p = plan_from_history([days.get(d, 0.0) for d in range(start, day)], self.params)
        self._plans[key] = (day, p)
        return p

    def order(self, key: Key, day: int, position: float) -> float:
        p = self.plan(key, day)
        if p is None:
            return self.fallback.order(key, day, position)
        if position >= p.reorder_point:
            return 0.0
        return round_up(p.order_up_to - position, BY_SKU[key[1]].unit)


@dataclass
class PolicyResult:
    policy: str
    stockout_events: int = 0
    lines: int = 0
    lines_short: int = 0
    requested_value: float = 0.0  # yuan, at sales prices
    filled_value: float = 0.0
    stock_value_ms: float = 0.0  # integral of the stock's value over the measured time
    measured_ms: int = 0
    purchase_orders: int = 0

    @property
    def fill_rate(self) -> float:
        return self.filled_value / self.requested_value if self.requested_value else 1.0

    @property
    def avg_stock_value(self) -> float:
        return self.stock_value_ms / self.measured_ms if self.measured_ms else 0.0

    @property
    def days_of_stock(self) -> float:
        per_day = self.requested_value / (self.measured_ms / DAY_MS) if self.measured_ms else 0.0
        return self.avg_stock_value / per_day if per_day else math.inf


def run_policy(demands: Sequence[Demand], policy: BuyerPolicy | SuggestedPolicy, keys: list[Key],
               lead_time_days: float, measure_from: int, end: int) -> PolicyResult:
    """``demands`` (time order) against ``policy``'s stock; measured from ``measure_from`` to ``end``."""
    book = StockBook(policy, keys, lead_time_days)
    price = {k: BY_SKU[k[1]].price_cents / 100 for k in keys}
    res = PolicyResult(policy.name)
    total = sum(book.on_hand[k] * price[k] for k in keys)
    last = measure_from
    out: set[Key] = set()

    def advance(t: int) -> None:
        nonlocal last
        if t > last:
            res.stock_value_ms += total * (t - last)
            last = t

    for d in demands:
        for r in book.due(d.at):
            advance(r.arrives_at)
            total += r.quantity * price[r.key]
            out.discard(r.key)
        advance(d.at)
        measured = d.at >= measure_from
        day = business_day(d.at)
        for _, sku, unit, q in d.lines:
            key = (d.warehouse_id, sku)
            have = max(0.0, book.on_hand[key])
            filled = min(q, float(math.floor(have)) if unit == "PIECE" else have)
            book.take(key, filled)
            total -= filled * price[key]
            policy.observe(key, day, q)
            short = q - filled > 1e-9
            if measured:
                res.lines += 1
                res.requested_value += q * price[key]
                res.filled_value += filled * price[key]
                res.lines_short += short
                res.stockout_events += short and key not in out
            if short:
                out.add(key)
            book.review(key, d.at, day)
    advance(end)
    res.measured_ms = max(0, end - measure_from)
    res.purchase_orders = book._po
    return res


def compare(seed: int = 42, weeks: int = 4, warmup_days: int = 7, orders_per_hour: float = 60.0,
            params: PolicyParams | None = None) -> tuple[PolicyResult, PolicyResult]:
    """(current, suggested) on the same ``weeks`` of seeded demand after ``warmup_days``."""
    params = params or PolicyParams()
    days = warmup_days + 7 * weeks
    config = SimulationConfig(seed=seed, orders=round(orders_per_hour * 24 * days), orders_per_hour=orders_per_hour)
    city = build_city(config.seed, config.n_warehouses, config.n_restaurants, config.n_drivers)
    keys = [(wh.id, p.sku) for wh in city.warehouses for p in CATALOGUE]
    demands = list(order_demand(config))
    measure_from = config.start + warmup_days * DAY_MS
    end = config.start + days * DAY_MS
    demands = [d for d in demands if d.at < end]
    expected = expected_daily_demand(config, city)

    def buyer() -> BuyerPolicy:
        return BuyerPolicy(expected, params.lead_time_days)

    current = run_policy(demands, buyer(), keys, params.lead_time_days, measure_from, end)
    suggested = run_policy(demands, SuggestedPolicy(params, buyer(), business_day(config.start)), keys,
                           params.lead_time_days, measure_from, end)
    return current, suggested


def table(current: PolicyResult, *others: tuple[str, PolicyResult]) -> str:
    """The markdown comparison: one column for ``current``, one per ``(label, result)`` with its difference."""
    def pct(a: float, b: float) -> str:
        return f"{(b - a) / a * 100:+.0f} %" if a else "n/a"

    def cells(r: PolicyResult) -> list[str]:
        c = current
        return [f"{r.stockout_events:,}" + ("" if r is c else f" ({pct(c.stockout_events, r.stockout_events)})"),
                f"{r.lines_short:,} of {r.lines:,}",
                f"{r.fill_rate:.2%}" + ("" if r is c else f" ({(r.fill_rate - c.fill_rate) * 100:+.2f} pt)"),
                f"{r.avg_stock_value:,.0f}" + ("" if r is c else f" ({pct(c.avg_stock_value, r.avg_stock_value)})"),
                f"{r.days_of_stock:.2f}" + ("" if r is c else f" ({r.days_of_stock - c.days_of_stock:+.2f})"),
                f"{r.purchase_orders:,}"]

    names = ["stock-out events", "order lines short", "fill rate (value)", "average stock held (¥ at sales prices)",
             "days of stock held", "purchase orders"]
    columns = [cells(current)] + [cells(r) for _, r in others]
    lines = ["| | current policy | " + " | ".join(label for label, _ in others) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(col[i] for col in columns) + " |" for i, name in enumerate(names)]
    return "\n".join(lines)


def stock_report_section(seed: int = 42, weeks: int = 4, seeds: int = 1) -> tuple[str, str]:
    """(title, markdown) for the model report. Two suggestion columns: as configured (re-order daily up to one
    day past the reorder point) and with the current policy's order size (two days), which separates the
    effect of the safety stock from that of ordering more often. With ``seeds`` > 1, a line on how often
    the suggestions had fewer stock-outs over seeds ``seed .. seed + seeds - 1``."""
    params = PolicyParams()
    same_size = replace(params, review_days=2.0)
    current, suggested = compare(seed, weeks, params=params)
    _, sized = compare(seed, weeks, params=same_size)
    text = [f"Closed-loop simulation, {weeks} weeks after a 7-day warm-up, seed {seed}, 60 orders/h, "
            f"3 warehouses x {len(CATALOGUE)} SKUs, lead time {params.lead_time_days:g} day, the stock decides "
            f"what is short. Suggestions: reorder point at a {params.service_level:.0%} cycle service level over "
            f"{params.history_days} days of history, order up to the reorder point + R days of demand. "
            "Differences are against the current policy.", "",
            table(current, (f"suggestions, R = {params.review_days:g} day (config)", suggested),
                  (f"suggestions, R = {same_size.review_days:g} days (current order size)", sized))]
    if seeds > 1:
        runs = [(current, sized)] + [compare(s, weeks, params=same_size) for s in range(seed + 1, seed + seeds)]
        better = sum(sug.stockout_events < cur.stockout_events for cur, sug in runs)
        more = [sug.avg_stock_value / cur.avg_stock_value - 1 for cur, sug in runs]
        text += ["", f"Seeds {seed}..{seed + seeds - 1}, R = 2 days: fewer stock-outs with the suggestions in "
                     f"{better} of {seeds}; stock held {min(more):+.0%} .. {max(more):+.0%}."]
    return "Replenishment: current policy vs suggestions", "\n".join(text)


