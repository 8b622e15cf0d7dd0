"""Event builders with fixed instants: shared by tests, benchmarks and the simulator.

Every builder returns ``(record_type, record)`` where ``record`` matches the
Avro schema of that type (times as epoch ms, which the codec accepts).
``order_story`` gives a whole legal history of one order.
"""

from __future__ import annotations

import uuid
from typing import Any

T0 = 1_780_293_600_000  # 2026-06-01T06:00:00Z, the morning wave leaves the warehouse
MINUTE = 60_000

WAREHOUSE = {"id": "WH-BJ-CY-01", "lat": 39.9625, "lng": 116.4980}  # 朝阳区 cold store
DESTINATION = {"lat": 39.9042, "lng": 116.4074}  # 天安门 area restaurant (seed scenario 1)

Event = tuple[str, dict[str, Any]]


def event_id(order_id: str, version: int, salt: str = "") -> str:
    """Deterministic UUID for an order event (same inputs, same id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kuailv:{order_id}:{version}:{salt}"))


def _env(order_id: str, version: int, at: int, producer: str = "order-service") -> dict[str, Any]:
    return {"event_id": event_id(order_id, version), "order_id": order_id, "version": version,
            "event_time": at, "producer": producer}


def default_lines() -> list[dict[str, Any]]:
    return [
        {"line_no": 1, "sku": "VEG-SPINACH-ORG", "name": "有机菠菜", "category": "VEGETABLE", "unit": "KG",
         "quantity": 5.0, "unit_price_cents": 1200},
        {"line_no": 2, "sku": "MEAT-PORK-BELLY", "name": "五花肉", "category": "MEAT", "unit": "KG",
         "quantity": 3.0, "unit_price_cents": 3800},
        {"line_no": 3, "sku": "DAIRY-MILK-1L", "name": "鲜牛奶 1L", "category": "DAIRY", "unit": "PIECE",
         "quantity": 12.0, "unit_price_cents": 1350},
    ]


def order_created(order_id: str, version: int = 1, at: int = T0, *, lines: list[dict[str, Any]] | None = None,
                  customer_id: str = "CUST-0001", window_minutes: tuple[int, int] = (60, 120)) -> Event:
    lines = lines if lines is not None else default_lines()
    total = int(sum(ln["quantity"] * ln["unit_price_cents"] for ln in lines))
    return "OrderCreated", {
        **_env(order_id, version, at),
        "customer_id": customer_id, "customer_name": "王经理", "customer_phone": "13812345678",
        "warehouse_id": WAREHOUSE["id"], "lines": lines,
        "delivery_window_start": at + window_minutes[0] * MINUTE,
        "delivery_window_end": at + window_minutes[1] * MINUTE,
        "delivery_address": {"text": "北京市东城区东长安街1号 川味小馆", "district": "东城区",
                             "location": dict(DESTINATION)},
        "total_cents": total, "remark": None,
    }


def payment_confirmed(order_id: str, version: int, at: int, amount_cents: int = 0) -> Event:
    return "PaymentConfirmed", {**_env(order_id, version, at, "payment-gateway"),
                                "payment_id": f"PAY-{order_id}", "amount_cents": amount_cents, "method": "WECHAT_PAY"}


def stock_checked(order_id: str, version: int, at: int, lines: list[dict[str, Any]],
                  short: dict[int, float] | None = None) -> Event:
    short = short or {}
    out = []
    for ln in lines:
        available = short.get(ln["line_no"], ln["quantity"])
        out.append({"line_no": ln["line_no"], "sku": ln["sku"], "requested": ln["quantity"],
                    "available": available, "status": "SHORT" if available < ln["quantity"] else "OK"})
    return "StockChecked", {**_env(order_id, version, at, "wms"), "warehouse_id": WAREHOUSE["id"], "lines": out}


def picking_started(order_id: str, version: int, at: int) -> Event:
    return "PickingStarted", {**_env(order_id, version, at, "wms"), "warehouse_id": WAREHOUSE["id"],
                              "picker_id": "PICKER-07"}


def line_weighed(order_id: str, version: int, at: int, line: dict[str, Any], picked: float | None = None,
                 measured_kg: float | None = None) -> Event:
    picked = line["quantity"] if picked is None else picked
    expected = picked if line["unit"] == "KG" else picked * 1.03
    return "LineWeighed", {**_env(order_id, version, at, "scale-gateway"), "line_no": line["line_no"],
                           "sku": line["sku"], "scale_id": "SCALE-03", "picked_quantity": picked,
                           "expected_kg": round(expected, 3),
                           "measured_kg": round(expected if measured_kg is None else measured_kg, 3)}


def order_packed(order_id: str, version: int, at: int) -> Event:
    return "OrderPacked", {**_env(order_id, version, at, "wms"), "package_count": 2, "packer_id": "PACKER-02"}


def order_dispatched(order_id: str, version: int, at: int, driver_id: str = "DRV-001",
                     eta: int | None = None) -> Event:
    return "OrderDispatched", {**_env(order_id, version, at, "dispatch"), "driver_id": driver_id,
                               "driver_name": "张三", "driver_phone": "13800001234",
                               "vehicle_id": f"VAN-{driver_id[-3:]}", "vehicle_plate": "京A·12345",
                               "origin": {"lat": WAREHOUSE["lat"], "lng": WAREHOUSE["lng"]},
                               "estimated_arrival": eta}


def exception_reported(order_id: str, version: int, at: int, driver_id: str = "DRV-001",
                       reason_code: str = "TRAFFIC_ACCIDENT") -> Event:
    return "ExceptionReported", {**_env(order_id, version, at, "driver-app"), "reason_code": reason_code,
                                 "description": "追尾事故, 车辆无法继续行驶", "driver_id": driver_id,
                                 "location": {"lat": 39.93, "lng": 116.45}}


def order_delivered(order_id: str, version: int, at: int, lines: list[dict[str, Any]]) -> Event:
    return "OrderDelivered", {**_env(order_id, version, at, "driver-app"), "receiver_name": "李厨师",
                              "signature_ref": f"sig/{order_id}.png", "photo_ref": None,
                              "location": dict(DESTINATION),
                              "lines": [{"line_no": ln["line_no"], "delivered_quantity": ln["quantity"]}
                                        for ln in lines]}


def delivery_refused(order_id: str, version: int, at: int) -> Event:
    return "DeliveryRefused", {**_env(order_id, version, at, "driver-app"), "reason": "菜叶发黄, 客户拒收",
                               "location": dict(DESTINATION)}


def order_cancelled(order_id: str, version: int, at: int) -> Event:
    return "OrderCancelled", {**_env(order_id, version, at), "reason": "customer changed plans",
                              "cancelled_by": "CUSTOMER"}


def order_story(order_id: str, start: int = T0, *, ending: str = "signed") -> list[Event]:
    """A legal history. ``ending``: signed, redispatched (accident, new driver,
    signed), refused, cancelled, out_of_stock."""
    _, created = order_created(order_id, 1, start)
    lines = created["lines"]
    events: list[Event] = [("OrderCreated", created)]

    def add(builder: Any, *args: Any, **kw: Any) -> None:
        version = len(events) + 1
        at = start + version * 5 * MINUTE
        events.append(builder(order_id, version, at, *args, **kw))

    add(payment_confirmed, created["total_cents"])
    if ending == "cancelled":
        add(order_cancelled)
        return events
    if ending == "out_of_stock":
        add(stock_checked, lines, {ln["line_no"]: 0.0 for ln in lines})
        return events
    short = {2: 2.0}  # partial shortage on the pork: 2 of 3 kg
    add(stock_checked, lines, short)
    add(picking_started)
    picked = {ln["line_no"]: min(ln["quantity"], short.get(ln["line_no"], ln["quantity"])) for ln in lines}
    for ln in lines:
        qty = picked[ln["line_no"]]
        add(line_weighed, ln, qty, (qty * 0.98) if ln["unit"] == "KG" else None)
    add(order_packed)
    add(order_dispatched, "DRV-001", start + 90 * MINUTE)
    if ending == "redispatched":
        add(exception_reported, "DRV-001")
        add(order_dispatched, "DRV-002", start + 110 * MINUTE)
    if ending == "refused":
        add(delivery_refused)
        return events
    add(order_delivered, [{**ln, "quantity": picked[ln["line_no"]]} for ln in lines])
    return events
