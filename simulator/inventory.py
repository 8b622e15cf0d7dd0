"""The warehouses' stock in the simulation: replenishment policies and the ``StockMovement`` records. Pure, seeded.

Two uses:

* ``with_stock(steps, config, city)`` follows a run of ``simulator.traffic.simulate`` (``simulate(config,
  stock=True)``) and adds the warehouse management system's ``StockMovement`` records as ``Telemetry``
  steps, keyed ``warehouse_id/sku``: an opening ``COUNT`` per warehouse x SKU, ``SHORTAGE`` for the short
  lines of a stock check, ``PICK`` per weighed line, ``RETURN`` for restocked returns and ``RECEIPT`` of
  the purchase orders the **current policy** (``BuyerPolicy``) places. The order flow's shortages stay
  the order flow's own seeded draws (``simulator.orders``; the order-flow tests rely on them), so the
  stock follows the orders: when a pick needs more than the book stock, a ``COUNT`` (reference
  ``RECOUNT``) first sets the stock to what the pick takes, as a warehouse's recount would.
* ``order_demand(config)`` is the same seeded order stream without the fleet (what customers ask of each
  warehouse, cheap enough for weeks), for the closed-loop comparison of policies in
  ``models.stock_evaluation``, where the stock decides what is short.

Current policy (``BuyerPolicy``): a buyer set, once, per warehouse x SKU, a minimum = the expected
demand over the lead time (no safety stock) and an order quantity = two days of expected demand; the
WMS orders that quantity whenever stock + open orders fall below the minimum. The expected demand is
the true mean of the generator (``expected_daily_demand``): the buyer knows the average, not the spread.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from models.replenishment import DAY_MS, round_up
from simulator.catalogue import _LINE_COUNTS, _LINE_WEIGHTS, BY_SKU, CATALOGUE
from simulator.city import City, Restaurant, build_city
from simulator.config import Command, SimulationConfig, Step, Telemetry
from simulator.orders import beijing_date, order_id_for, plan_order

PRODUCER = "wms"
Key = tuple[str, str]  # (warehouse_id, sku)


def stock_key(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass(frozen=True, slots=True)
class Demand:
    """One order's request of its warehouse at its stock check (``at`` = creation time)."""

    at: int
    order_id: str
    warehouse_id: str
    lines: tuple[tuple[int, str, str, float], ...]  # (line_no, sku, unit, quantity)


def order_demand(config: SimulationConfig) -> Iterator[Demand]:
    """The orders of ``simulate(config)`` (same seeded arrivals and plans, no fleet) that take stock: not unpaid
    and not cancelled before picking. Their fates' shortage draws are ignored: here the stock decides."""
    city = build_city(config.seed, config.n_warehouses, config.n_restaurants, config.n_drivers)
    rng = random.Random(f"kuailv-arrivals:{config.seed}")  # as simulator.traffic._arrivals draws them
    deck: list[Restaurant] = []
    width = max(4, len(str(config.orders)))
    mean_gap_ms = 3_600_000 / config.orders_per_hour
    now, day, day_seq = config.start, "", 0
    for seq in range(1, config.orders + 1):
        if seq > 1:
            now += int(rng.expovariate(1.0 / mean_gap_ms))
        date = beijing_date(now)
        day, day_seq = date, (day_seq + 1 if date == day else 1)
        if not deck:
            deck = list(city.restaurants)
            rng.shuffle(deck)
        o = plan_order(config, city, seq, order_id_for(date, day_seq, width), now, deck.pop())
        if o.fate not in ("unpaid", "cancel_paid", "cancel_picking"):
            yield Demand(now, o.order_id, o.warehouse.id,
                         tuple((ln["line_no"], ln["sku"], ln["unit"], ln["quantity"]) for ln in o.lines))


def expected_daily_demand(config: SimulationConfig, city: City) -> dict[Key, float]:
    """The generator's mean demand per day per warehouse x SKU (what the buyer's settings are based on)."""
    lines_per_order = sum(c * w for c, w in zip(_LINE_COUNTS, _LINE_WEIGHTS, strict=True)) / sum(_LINE_WEIGHTS)
    taking = 1.0 - config.p_unpaid - config.p_cancel
    orders_per_day = config.orders_per_hour * 24 * taking
    out = {}
    for wh in city.warehouses:
        share = sum(r.warehouse_id == wh.id for r in city.restaurants) / len(city.restaurants)
        for p in CATALOGUE:
            out[(wh.id, p.sku)] = orders_per_day * share * lines_per_order / len(CATALOGUE) * sum(p.qty) / 2
    return out


class BuyerPolicy:
    """The current policy: order ``order_days`` of expected demand when stock + on order < expected lead-time
    demand."""

    name = "current (buyer's fixed min / fixed quantity)"

    def __init__(self, expected: dict[Key, float], lead_time_days: float = 1.0, order_days: float = 2.0) -> None:
        self.expected = expected
        self.lead_time_days = lead_time_days
        self.order_days = order_days

    def minimum(self, key: Key) -> float:
        return self.expected[key] * self.lead_time_days

    def initial(self, key: Key) -> float:
        return round_up(self.minimum(key) + self.expected[key] * self.order_days, BY_SKU[key[1]].unit)

    def observe(self, key: Key, day: int, quantity: float) -> None:
        """Demand of ``key`` on business day ``day`` (the buyer ignores it)."""

    def order(self, key: Key, day: int, position: float) -> float:
        """What to order now, given stock + on order (0: nothing)."""
        if position >= self.minimum(key):
            return 0.0
        return round_up(self.expected[key] * self.order_days, BY_SKU[key[1]].unit)


@dataclass(order=True)
class _Receipt:
    arrives_at: int
    po: str
    key: Key
    quantity: float


class StockBook:
    """On hand and on order per warehouse x SKU under a policy; purchase orders arrive ``lead_time_days`` later."""

    def __init__(self, policy: Any, keys: list[Key], lead_time_days: float) -> None:
        self.policy = policy
        self.lead_ms = round(lead_time_days * DAY_MS)
        self.on_hand = {k: policy.initial(k) for k in keys}
        self.on_order = dict.fromkeys(keys, 0.0)
        self._due: list[_Receipt] = []
        self._po = 0

    def due(self, until: int) -> Iterator[_Receipt]:
        """Receipts arriving at or before ``until``, in time order (booked as they are yielded)."""
        while self._due and self._due[0].arrives_at <= until:
            r = heapq.heappop(self._due)
            self.on_hand[r.key] = round(self.on_hand[r.key] + r.quantity, 6)
            self.on_order[r.key] = round(self.on_order[r.key] - r.quantity, 6)
            yield r

    def take(self, key: Key, quantity: float) -> None:
        self.on_hand[key] = round(self.on_hand[key] - quantity, 6)

    def review(self, key: Key, at: int, day: int) -> None:
        """After a movement: the policy may place a purchase order."""
        qty = self.policy.order(key, day, self.on_hand[key] + self.on_order[key])
        if qty > 0:
            self._po += 1
            self.on_order[key] = round(self.on_order[key] + qty, 6)
            heapq.heappush(self._due, _Receipt(at + self.lead_ms, f"PO-{self._po:06d}", key, qty))


def _movement(at: int, key: Key, kind: str, quantity: float, event_id: str, *, order_id: str | None = None,
              line_no: int | None = None, reference: str | None = None) -> Telemetry:
    record = {"event_id": event_id, "warehouse_id": key[0], "sku": key[1], "kind": kind, "quantity": quantity,
              "unit": BY_SKU[key[1]].unit, "order_id": order_id, "line_no": line_no, "reference": reference,
              "event_time": at, "producer": PRODUCER}
    return Telemetry(at, "StockMovement", stock_key(key), record)


class StockFlow:
    """The stock movements a run's order commands imply (see the module docstring)."""

    def __init__(self, config: SimulationConfig, city: City, lead_time_days: float = 1.0) -> None:
        keys = [(wh.id, p.sku) for wh in city.warehouses for p in CATALOGUE]
        self.book = StockBook(BuyerPolicy(expected_daily_demand(config, city), lead_time_days), keys, lead_time_days)
        self.orders: dict[str, dict[str, Any]] = {}  # order id -> warehouse, lines by no, lines to come back

    def opening(self, at: int) -> list[Telemetry]:
        return [_movement(at, k, "COUNT", q, f"CNT-OPEN-{stock_key(k)}", reference="OPENING")
                for k, q in self.book.on_hand.items()]

    def receipts(self, until: int) -> list[Telemetry]:
        return [_movement(r.arrives_at, r.key, "RECEIPT", r.quantity, f"RCV-{r.po}", reference=r.po)
                for r in self.book.due(until)]

    def after(self, cmd: Command) -> list[Telemetry]:
        """The movements of an order command, at its time."""
        p, at, oid = cmd.payload, cmd.at, cmd.order_id
        if cmd.name == "create":
            if len(self.orders) > 4096:  # returns come within hours: forget orders older than two days
                self.orders = {k: v for k, v in self.orders.items() if v["at"] > at - 2 * DAY_MS}
            self.orders[oid] = {"wh": p["warehouse_id"], "lines": {ln["line_no"]: ln for ln in p["lines"]},
                                "picked": {}, "back": [], "at": at}
            return []
        o = self.orders.get(oid)
        if o is None:
            return []
        out: list[Telemetry] = []
        day = _day(at)
        if cmd.name == "check_stock":
            for row in p["lines"]:
                short = round(row["requested"] - row["available"], 6)
                if short > 0:
                    out.append(_movement(at, (o["wh"], row["sku"]), "SHORTAGE", short, f"SHT-{oid}-{row['line_no']}",
                                         order_id=oid, line_no=row["line_no"]))
        elif cmd.name == "weigh_line":
            key, qty, no = (o["wh"], p["sku"]), p["picked_quantity"], p["line_no"]
            o["picked"][no] = qty
            if self.book.on_hand[key] < qty:
                self.book.on_hand[key] = qty
                out.append(_movement(at, key, "COUNT", qty, f"CNT-{oid}-{no}", reference="RECOUNT"))
            self.book.take(key, qty)
            out.append(_movement(at, key, "PICK", qty, f"PCK-{oid}-{no}", order_id=oid, line_no=no))
            self.book.review(key, at, day)
        elif cmd.name == "refuse":
            o["back"] = [{"line_no": no, "quantity": q} for no, q in o["picked"].items() if q > 0]
        elif cmd.name == "start_return":
            o["back"] = list(p["lines"])
        elif cmd.name == "complete_return":
            if p["restocked"]:
                for ln in o["back"]:
                    key = (o["wh"], o["lines"][ln["line_no"]]["sku"])
                    self.book.on_hand[key] = round(self.book.on_hand[key] + ln["quantity"], 6)
                    out.append(_movement(at, key, "RETURN", ln["quantity"], f"RET-{oid}-{ln['line_no']}",
                                         order_id=oid, line_no=ln["line_no"]))
            del self.orders[oid]
        return out


def _day(at: int) -> int:
    return (at + 8 * 3_600_000) // DAY_MS


def with_stock(steps: Iterator[Step], config: SimulationConfig, city: City) -> Iterator[Step]:
    """``steps`` with the stock movements they imply, still in non-decreasing event time."""
    flow = StockFlow(config, city)
    yield from flow.opening(config.start)
    for s in steps:
        yield from flow.receipts(s.at)
        yield s
        if isinstance(s, Command):
            yield from flow.after(s)
