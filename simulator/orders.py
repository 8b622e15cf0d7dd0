"""One order: its plan (decided when it is placed) and its warehouse-side flow.

``plan_order`` draws everything random about an order from its own seeded
generator: lines, delivery window, fate, shortages. ``warehouse_flow``
is the process from OrderCreated to OrderPacked (or an early ending); a packed
order is handed to the fleet, which dispatches and delivers it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from simulator.catalogue import BY_SKU, draw_lines
from simulator.city import City, Restaurant, Warehouse
from simulator.config import Command, SimulationConfig
from simulator.events import MINUTE
from simulator.routes import estimate_s

if TYPE_CHECKING:
    from simulator.engine import Engine, Process
    from simulator.fleet import Fleet

BEIJING = timezone(timedelta(hours=8))
HALF_HOUR = 30 * MINUTE
DOOR_FATES = ("refused", "damaged", "returned")  # decided at the customer's door
_REMARKS = ("请走后门卸货", "10点前必须送到", "到了打电话", "蔬菜要新鲜的", "发票随货")


@dataclass(slots=True)
class SimOrder:
    seq: int
    order_id: str
    created_at: int
    restaurant: Restaurant
    warehouse: Warehouse
    rng: random.Random
    lines: list[dict[str, Any]]
    window: tuple[int, int]
    fate: str  # signed, unpaid, cancel_paid, cancel_picking, out_of_stock, refused, damaged, returned
    available: dict[int, float]  # per line_no, after the stock check
    ready_at: int = 0  # when it joined the dispatch queue
    picked: dict[int, float] = field(default_factory=dict)

    @property
    def total_cents(self) -> int:
        return round(sum(ln["quantity"] * ln["unit_price_cents"] for ln in self.lines))

    def cmd(self, at: int, name: str, payload: dict[str, Any]) -> Command:
        return Command(at, self.order_id, name, payload)


def beijing_date(at: int) -> str:
    """The Beijing calendar date (YYYYMMDD) of an epoch-ms instant."""
    return f"{datetime.fromtimestamp(at / 1000, tz=UTC).astimezone(BEIJING):%Y%m%d}"


def order_id_for(date: str, day_seq: int, width: int = 4) -> str:
    """``KL`` + date + the day's sequence number, e.g. KL202606010001."""
    return f"KL{date}{day_seq:0{width}d}"


def _fate(rng: random.Random, c: SimulationConfig) -> str:
    r = rng.random()
    for name, p in (("unpaid", c.p_unpaid), ("cancel_paid", c.p_cancel / 2), ("cancel_picking", c.p_cancel / 2),
                    ("out_of_stock", c.p_out_of_stock)):
        if r < p:
            return name
        r -= p
    r = rng.random()
    for name, p in zip(DOOR_FATES, (c.p_refused, c.p_damaged, c.p_return_after_sign), strict=True):
        if r < p:
            return name
        r -= p
    return "signed"


def _availability(rng: random.Random, lines: list[dict[str, Any]], fate: str, p_short: float) -> dict[int, float]:
    if fate == "out_of_stock":
        return {ln["line_no"]: 0.0 for ln in lines}
    available = {ln["line_no"]: ln["quantity"] for ln in lines}
    if rng.random() < p_short:
        short = rng.sample(lines, max(1, len(lines) // 3))
        for ln in short:
            qty = ln["quantity"] * rng.uniform(0.0 if len(lines) > 1 else 0.3, 0.8)
            available[ln["line_no"]] = float(int(qty)) if ln["unit"] == "PIECE" else round(qty * 2) / 2
        if all(v <= 0 for v in available.values()):  # a partial shortage keeps something to deliver
            first = lines[0]
            available[first["line_no"]] = first["quantity"]
    return available


def plan_order(config: SimulationConfig, city: City, seq: int, order_id: str, at: int,
               restaurant: Restaurant) -> SimOrder:
    rng = random.Random(f"kuailv-order:{config.seed}:{seq}")
    lines = draw_lines(rng)
    start = -(-(at + int(rng.uniform(90, 180) * MINUTE)) // HALF_HOUR) * HALF_HOUR  # next half hour
    window = (start, start + rng.choice((60, 90, 120)) * MINUTE)
    fate = _fate(rng, config)
    available = _availability(rng, lines, fate, config.p_partial_shortage)
    return SimOrder(seq, order_id, at, restaurant, city.warehouse(restaurant.warehouse_id), rng, lines, window,
                    fate, available)


def created_payload(o: SimOrder) -> dict[str, Any]:
    r = o.restaurant
    return {
        "customer_id": r.customer_id, "customer_name": r.contact_name, "customer_phone": r.contact_phone,
        "warehouse_id": o.warehouse.id, "lines": o.lines,
        "delivery_window_start": o.window[0], "delivery_window_end": o.window[1],
        "delivery_address": {"text": r.address, "district": r.district,
                             "location": {"lat": r.location[0], "lng": r.location[1]}},
        "total_cents": o.total_cents,
        "remark": o.rng.choice(_REMARKS) if o.rng.random() < 0.15 else None,
    }


def _stock_payload(o: SimOrder) -> dict[str, Any]:
    rows = []
    for ln in o.lines:
        available = o.available[ln["line_no"]]
        rows.append({"line_no": ln["line_no"], "sku": ln["sku"], "requested": ln["quantity"], "available": available,
                     "status": "OK" if available >= ln["quantity"] else "SHORT"})
    return {"warehouse_id": o.warehouse.id, "lines": rows}


def _weigh_payload(o: SimOrder, line: dict[str, Any], p_under: float) -> dict[str, Any]:
    rng = o.rng
    picked = o.available[line["line_no"]]
    o.picked[line["line_no"]] = picked
    expected = BY_SKU[line["sku"]].expected_kg(picked)
    under = rng.random() < p_under  # short-filled or a mis-tared scale
    factor = rng.uniform(0.90, 0.95) if under else 1.0 + max(-0.02, min(0.02, rng.gauss(0, 0.007)))
    scale = f"SCALE-{o.warehouse.id[6:8]}-{rng.randint(1, 8):02d}"
    return {"line_no": line["line_no"], "sku": line["sku"], "scale_id": scale, "picked_quantity": picked,
            "expected_kg": expected, "measured_kg": round(expected * factor, 3)}


def warehouse_flow(engine: Engine, fleet: Fleet, o: SimOrder, config: SimulationConfig) -> Process:
    """OrderCreated .. OrderPacked, then hand-over to the fleet (or an early ending)."""
    rng = o.rng

    def after(lo_min: float, hi_min: float) -> int:
        return engine.now + int(rng.uniform(lo_min, hi_min) * MINUTE)

    yield o.cmd(engine.now, "create", created_payload(o))
    if o.fate == "unpaid":
        yield engine.now + HALF_HOUR
        yield o.cmd(engine.now, "cancel", {"reason": "超时未支付, 系统自动取消", "cancelled_by": "SYSTEM"})
        return
    yield after(0.2, 12)
    method = rng.choices(("WECHAT_PAY", "ALIPAY", "CREDIT_ACCOUNT", "BANK_TRANSFER"), weights=(45, 25, 20, 10))[0]
    yield o.cmd(engine.now, "confirm_payment", {"payment_id": f"PAY-{o.order_id}-{rng.randint(1000, 9999)}",
                                                "amount_cents": o.total_cents, "method": method})
    yield after(1, 5)
    yield o.cmd(engine.now, "check_stock", _stock_payload(o))
    if o.fate == "out_of_stock":
        if rng.random() < 0.5:  # the shortage notice goes out; half the customers get an automatic refund
            yield after(10, 30)
            yield o.cmd(engine.now, "cancel", {"reason": "全部缺货, 自动取消并退款", "cancelled_by": "SYSTEM"})
        return
    if o.fate == "cancel_paid":
        yield after(5, 30)
        yield o.cmd(engine.now, "cancel", {"reason": "客户临时取消订单", "cancelled_by": "CUSTOMER"})
        return
    yield max(after(2, 10), o.window[0] - int(rng.uniform(100, 130) * MINUTE))
    picker = f"PICKER-{rng.randint(1, 24):02d}"
    yield o.cmd(engine.now, "start_picking", {"warehouse_id": o.warehouse.id, "picker_id": picker})
    if o.fate == "cancel_picking":
        yield after(2, 8)
        by = rng.choice(("CUSTOMER", "OPERATOR"))
        yield o.cmd(engine.now, "cancel", {"reason": "餐厅今日停业" if by == "CUSTOMER" else "拣货异常, 运营取消",
                                           "cancelled_by": by})
        return
    for line in o.lines:
        if o.available[line["line_no"]] > 0:
            yield after(1, 4)
            yield o.cmd(engine.now, "weigh_line", _weigh_payload(o, line, config.p_scale_under))
        else:
            o.picked[line["line_no"]] = 0.0
    yield after(3, 8)
    weight = sum(BY_SKU[ln["sku"]].expected_kg(o.picked[ln["line_no"]]) for ln in o.lines)
    yield o.cmd(engine.now, "pack", {"package_count": max(1, -(-int(weight) // 15)),
                                     "packer_id": f"PACKER-{rng.randint(1, 12):02d}"})
    # Staged in the cold room until its wave: ready so that the van arrives about when the window opens.
    lead = int(estimate_s(o.warehouse.location, o.restaurant.location) * 1000) + 20 * MINUTE
    yield max(engine.now + MINUTE, o.window[0] - lead)
    fleet.ready(o)
