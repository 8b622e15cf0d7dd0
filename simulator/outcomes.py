"""What happens at the customer's door and afterwards: signed, refused, damaged, returned.

``at_door`` runs inside a van's trip (the driver waits for it); the follow-ups
(damage claims, returns after signing, returns of refused goods) are separate
processes that do not hold up the van. They are spawned as background work:
they always run to completion, but telemetry stops once the last van is home
rather than ticking on through a claim's day-long settlement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.catalogue import line_total_cents
from simulator.city import SURNAMES, Driver
from simulator.events import MINUTE
from simulator.geo import Point
from simulator.orders import SimOrder

if TYPE_CHECKING:
    from simulator.engine import Engine, Process

_REFUSALS = ("菜叶发黄, 客户拒收", "送达超时, 餐厅已备好其他货源", "肉品温度偏高, 客户拒收", "收货人不在, 拒绝代收")
_RETURNS = ("部分菜品不新鲜", "海鲜到店后死亡", "规格与下单不符", "数量多送, 退回多余部分")
_DAMAGE = ("纸箱压损, 部分鸡蛋破碎", "泡沫箱破裂, 海鲜漏水", "奶制品包装破损", "西瓜运输中摔裂")


def geo(p: Point) -> dict[str, float]:
    return {"lat": p[0], "lng": p[1]}


def dispatch_payload(driver: Driver, origin: Point, eta: int | None) -> dict[str, Any]:
    return {"driver_id": driver.id, "driver_name": driver.name, "driver_phone": driver.phone,
            "vehicle_id": driver.vehicle_id, "vehicle_plate": driver.plate, "origin": geo(origin),
            "estimated_arrival": eta}


def exception_payload(reason_code: str, description: str, driver: Driver, where: Point) -> dict[str, Any]:
    return {"reason_code": reason_code, "description": description, "driver_id": driver.id, "location": geo(where)}


def _some_lines(o: SimOrder) -> list[dict[str, Any]]:
    """One or two delivered lines with a part of their quantity (claimed or returned)."""
    rng = o.rng
    picked = [ln for ln in o.lines if o.picked.get(ln["line_no"], 0.0) > 0]
    chosen = rng.sample(picked, min(len(picked), rng.choice((1, 1, 2))))
    out = []
    for ln in chosen:
        qty = o.picked[ln["line_no"]] * rng.uniform(0.2, 1.0)
        qty = max(1.0, float(int(qty))) if ln["unit"] == "PIECE" else max(0.5, round(qty * 2) / 2)
        out.append({"line_no": ln["line_no"], "quantity": min(qty, o.picked[ln["line_no"]])})
    return out


def at_door(engine: Engine, o: SimOrder, driver: Driver, van_returns: list[SimOrder]) -> Process:
    """Hand-over at the restaurant: the outcome was drawn when the order was placed."""
    rng = o.rng
    yield engine.now + int(rng.uniform(3, 8) * MINUTE)
    where = o.restaurant.location
    if o.fate == "refused":
        yield o.cmd(engine.now, "refuse", {"reason": rng.choice(_REFUSALS), "location": geo(where)})
        van_returns.append(o)  # the goods ride back to the warehouse with this van
    elif o.fate == "damaged":
        yield o.cmd(engine.now, "report_exception",
                    exception_payload("GOODS_DAMAGED", rng.choice(_DAMAGE), driver, where))
        engine.spawn(engine.now, claim_flow(engine, o), work=False)
    else:
        receiver = rng.choice((o.restaurant.contact_name, rng.choice(SURNAMES) + "师傅", "厨师长"))
        photo = f"photo/{o.order_id}.jpg" if rng.random() < 0.7 else None
        yield o.cmd(engine.now, "deliver", {
            "receiver_name": receiver, "signature_ref": f"sig/{o.order_id}.png", "photo_ref": photo,
            "location": geo(where),
            "lines": [{"line_no": ln["line_no"], "delivered_quantity": o.picked.get(ln["line_no"], 0.0)}
                      for ln in o.lines]})
        if o.fate == "returned":
            engine.spawn(engine.now, return_flow(engine, o), work=False)


def claim_flow(engine: Engine, o: SimOrder) -> Process:
    rng = o.rng
    yield engine.now + int(rng.uniform(10, 40) * MINUTE)
    lines = _some_lines(o)
    by_no = {ln["line_no"]: ln for ln in o.lines}
    claimed = sum(line_total_cents(by_no[cl["line_no"]], cl["quantity"]) for cl in lines)
    claim_id = f"CLM-{o.order_id}"
    yield o.cmd(engine.now, "open_claim", {"claim_id": claim_id, "description": "配送途中货物损坏",
                                           "lines": lines, "claimed_cents": claimed})
    yield engine.now + int(rng.uniform(120, 1440) * MINUTE)
    resolution = rng.choices(("REFUND", "REPLACEMENT", "REJECTED"), weights=(70, 20, 10))[0]
    settled = claimed if resolution == "REFUND" else 0
    yield o.cmd(engine.now, "settle_claim", {"claim_id": claim_id, "settled_cents": settled,
                                             "resolution": resolution})


def return_flow(engine: Engine, o: SimOrder) -> Process:
    """A complaint after signing: return accepted, goods collected later."""
    rng = o.rng
    yield engine.now + int(rng.uniform(60, 240) * MINUTE)
    yield o.cmd(engine.now, "start_return", {"reason": rng.choice(_RETURNS), "lines": _some_lines(o)})
    yield from complete_return(engine, o, 60, 180)


def complete_return(engine: Engine, o: SimOrder, lo_min: float, hi_min: float) -> Process:
    rng = o.rng
    yield engine.now + int(rng.uniform(lo_min, hi_min) * MINUTE)
    yield o.cmd(engine.now, "complete_return", {"warehouse_id": o.warehouse.id, "restocked": rng.random() < 0.3})
