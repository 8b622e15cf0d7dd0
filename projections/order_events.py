"""How each order event changes the order view, and what makes an event invalid.

``apply_event(view, event_type, event)`` returns a new view (the input is not
modified). ``validate(event_type, event, view)`` raises ``InvalidEvent`` for
data no state could accept (negative quantities, unknown line, coordinates out
of range). The view is the ``kuailv.projections.OrderState`` Avro record with
times as epoch ms.

Personal fields (driver name and phone, the receiver's name) are copied into the
view as they come, a plain string or a sealed dict (``privacy.sealed``); nothing
here reads, checks or decrypts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from projections.timefmt import ms, ms_or_none

View = dict[str, Any]
Event = Mapping[str, Any]


class InvalidEvent(Exception):
    reason_code = "INVALID_EVENT"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidEvent(message)


def _check_point(point: Mapping[str, Any], what: str) -> None:
    _require(-90.0 <= point["lat"] <= 90.0 and -180.0 <= point["lng"] <= 180.0,
             f"{what} ({point['lat']}, {point['lng']}) is not a valid coordinate")


def _line_nos(view: View | None) -> set[int]:
    return {line["line_no"] for line in view["lines"]} if view else set()


# Where each order event carries floating-point numbers (Avro float/double fields), the only
# values that can be NaN or infinite. tests/unit/projections/test_order_events_floats.py derives
# the same table from the Avro schemas, so a new float field cannot be missed.
FLOAT_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "OrderCreated": (("lines", "[]", "quantity"), ("delivery_address", "location", "lat"),
                     ("delivery_address", "location", "lng")),
    "StockChecked": (("lines", "[]", "requested"), ("lines", "[]", "available")),
    "LineWeighed": (("picked_quantity",), ("expected_kg",), ("measured_kg",)),
    "OrderDispatched": (("origin", "lat"), ("origin", "lng")),
    "ExceptionReported": (("location", "lat"), ("location", "lng")),
    "OrderDelivered": (("location", "lat"), ("location", "lng"), ("lines", "[]", "delivered_quantity")),
    "DeliveryRefused": (("location", "lat"), ("location", "lng")),
    "ReturnStarted": (("lines", "[]", "quantity"),),
    "DamageClaimOpened": (("lines", "[]", "quantity"),),
}


def _check_finite_at(node: Any, path: tuple[str, ...], i: int, where: str) -> None:
    while i < len(path):
        if node is None:
            return
        step = path[i]
        if step == "[]":
            for n, item in enumerate(node):
                _check_finite_at(item, path, i + 1, f"{where}[{n}]")
            return
        node = node[step]
        where = f"{where}.{step}"
        i += 1
    if type(node) is float and not math.isfinite(node):
        raise InvalidEvent(f"{where} is {node}: numbers must be finite")


def _check_finite(event_type: str, event: Event) -> None:
    """Every float in the event is finite (NaN/inf would make the state invalid JSON)."""
    for path in FLOAT_PATHS.get(event_type, ()):
        _check_finite_at(event, path, 0, event_type)


def validate(event_type: str, event: Event, view: View | None) -> None:
    """Raise InvalidEvent for impossible data. A missing or mistyped field raises
    KeyError/TypeError, which the fold also turns into an INVALID_EVENT rejection."""
    _check_finite(event_type, event)
    if event_type == "OrderCreated":
        lines = event["lines"]
        _require(len(lines) > 0, "an order needs at least one line")
        nos = [line["line_no"] for line in lines]
        _require(len(set(nos)) == len(nos), f"duplicate line numbers {sorted(nos)}")
        for line in lines:
            _require(line["quantity"] > 0, f"line {line['line_no']} quantity {line['quantity']} must be > 0")
            _require(line["unit_price_cents"] >= 0, f"line {line['line_no']} has a negative price")
        _require(ms(event["delivery_window_end"]) >= ms(event["delivery_window_start"]),
                 "delivery window ends before it starts")
        _check_point(event["delivery_address"]["location"], "delivery address")
        return
    if event_type == "StockChecked":
        known = _line_nos(view)
        checked = [line["line_no"] for line in event["lines"]]
        _require(sorted(checked) == sorted(known),
                 f"stock check covers lines {sorted(checked)}, the order has lines {sorted(known)}")
        for line in event["lines"]:
            _require(line["available"] >= 0, f"stock line {line['line_no']} has negative availability")
            short = line["available"] < line["requested"]
            _require(short == (line["status"] == "SHORT"),
                     f"stock line {line['line_no']}: status {line['status']} but {line['available']} of "
                     f"{line['requested']} available")
    elif event_type == "LineWeighed":
        _require(event["line_no"] in _line_nos(view), f"weighed line {event['line_no']} is not on the order")
        _require(event["picked_quantity"] >= 0 and event["measured_kg"] >= 0 and event["expected_kg"] >= 0,
                 f"line {event['line_no']}: negative picked quantity or weight")
    elif event_type in ("OrderDelivered", "ReturnStarted", "DamageClaimOpened"):
        ordered = {line["line_no"]: line["ordered"] for line in view["lines"]} if view else {}
        for line in event["lines"]:
            qty = line.get("delivered_quantity", line.get("quantity"))
            _require(line["line_no"] in ordered, f"line {line['line_no']} is not on the order")
            _require(qty is not None and 0 <= qty <= ordered[line["line_no"]],
                     f"line {line['line_no']}: quantity {qty} is outside 0..{ordered[line['line_no']]} ordered")
        if event_type == "DamageClaimOpened":
            _require(event["claimed_cents"] >= 0, "negative claim amount")
    elif event_type == "DamageClaimSettled":
        claim = view.get("claim") if view else None
        _require(claim is not None and claim["claim_id"] == event["claim_id"],
                 f"claim {event['claim_id']} was never opened on this order")
        _require(event["settled_cents"] >= 0, "negative settlement")
    elif event_type == "PaymentConfirmed":
        _require(event["amount_cents"] >= 0, "negative payment amount")
    for key in ("location", "origin"):
        if key in event and event[key] is not None:
            _check_point(event[key], key)


def _own_lines(v: View) -> dict[int, dict[str, Any]]:
    """Give ``v`` its own copies of the line dicts (the previous view shares them) and index them."""
    lines = [dict(line) for line in v["lines"]]
    v["lines"] = lines
    return {line["line_no"]: line for line in lines}


def _fix(point: Mapping[str, Any], at: int, source: str) -> dict[str, Any]:
    return {"lat": point["lat"], "lng": point["lng"], "at": at, "source": source}


def _created(_: View | None, e: Event) -> View:
    return {
        "order_id": e["order_id"],
        "customer_id": e["customer_id"],
        "warehouse_id": e["warehouse_id"],
        "status": "CREATED",
        "version": 0,
        "updated_at": 0,
        "stages": {},
        "lines": [
            {"line_no": ln["line_no"], "sku": ln["sku"], "name": ln["name"], "unit": str(ln["unit"]),
             "ordered": float(ln["quantity"]), "available": None, "short": 0.0, "picked": None,
             "expected_kg": None, "measured_kg": None, "delivered": None, "returned": 0.0}
            for ln in sorted(e["lines"], key=lambda ln: ln["line_no"])
        ],
        "short_lines": [],
        "delivery_window_start": ms(e["delivery_window_start"]),
        "delivery_window_end": ms(e["delivery_window_end"]),
        "destination": {"lat": e["delivery_address"]["location"]["lat"],
                        "lng": e["delivery_address"]["location"]["lng"]},
        "driver": None, "dispatch_count": 0, "last_location": None, "eta": None, "exception": None,
        "signature": None, "payment": None, "total_cents": e["total_cents"],
        "cancel_reason": None, "refusal_reason": None, "claim": None, "rejected_events": 0,
    }


def _paid(v: View, e: Event) -> None:
    v["payment"] = {"payment_id": e["payment_id"], "amount_cents": e["amount_cents"], "method": str(e["method"])}


def _stock(v: View, e: Event) -> None:
    by_no = _own_lines(v)
    short = []
    for sl in e["lines"]:
        line = by_no[sl["line_no"]]
        line["available"] = float(sl["available"])
        line["short"] = max(float(sl["requested"]) - float(sl["available"]), 0.0) if sl["status"] == "SHORT" else 0.0
        if sl["status"] == "SHORT":
            short.append(sl["line_no"])
    v["short_lines"] = sorted(short)


def _weighed(v: View, e: Event) -> None:
    v["lines"] = lines = [dict(line) if line["line_no"] == e["line_no"] else line for line in v["lines"]]
    for line in lines:
        if line["line_no"] == e["line_no"]:
            line["picked"] = float(e["picked_quantity"])
            line["expected_kg"] = float(e["expected_kg"])
            line["measured_kg"] = float(e["measured_kg"])


def _dispatched(v: View, e: Event) -> None:
    v["driver"] = {"driver_id": e["driver_id"], "name": e["driver_name"], "phone": e["driver_phone"],
                   "vehicle_id": e["vehicle_id"], "vehicle_plate": e["vehicle_plate"]}
    v["dispatch_count"] += 1
    v["last_location"] = _fix(e["origin"], ms(e["event_time"]), "OrderDispatched")
    v["eta"] = ms_or_none(e.get("estimated_arrival"))


def _exception(v: View, e: Event) -> None:
    at = ms(e["event_time"])
    v["exception"] = {"reason_code": str(e["reason_code"]), "description": e["description"], "at": at}
    v["last_location"] = _fix(e["location"], at, "ExceptionReported")
    v["eta"] = None  # the old estimate no longer holds; a re-dispatch brings a new one


def _delivered(v: View, e: Event) -> None:
    at = ms(e["event_time"])
    by_no = _own_lines(v)
    for dl in e["lines"]:
        by_no[dl["line_no"]]["delivered"] = float(dl["delivered_quantity"])
    v["signature"] = {"receiver_name": e["receiver_name"], "signature_ref": e["signature_ref"],
                      "photo_ref": e.get("photo_ref"), "at": at}
    v["last_location"] = _fix(e["location"], at, "OrderDelivered")
    v["eta"] = None


def _refused(v: View, e: Event) -> None:
    v["refusal_reason"] = e["reason"]
    v["last_location"] = _fix(e["location"], ms(e["event_time"]), "DeliveryRefused")
    v["eta"] = None


def _return_started(v: View, e: Event) -> None:
    by_no = _own_lines(v)
    for rl in e["lines"]:
        by_no[rl["line_no"]]["returned"] = float(rl["quantity"])


def _claim_opened(v: View, e: Event) -> None:
    v["claim"] = {"claim_id": e["claim_id"], "claimed_cents": e["claimed_cents"],
                  "settled_cents": None, "resolution": None}


def _claim_settled(v: View, e: Event) -> None:
    claim = dict(v["claim"] or {"claim_id": e["claim_id"], "claimed_cents": 0})
    claim.update(settled_cents=e["settled_cents"], resolution=str(e["resolution"]))
    v["claim"] = claim


def _cancelled(v: View, e: Event) -> None:
    v["cancel_reason"] = e["reason"]


def _nothing(v: View, e: Event) -> None:
    return None


HANDLERS: dict[str, Callable[[View, Event], None]] = {
    "PaymentConfirmed": _paid, "StockChecked": _stock, "PickingStarted": _nothing, "LineWeighed": _weighed,
    "OrderPacked": _nothing, "OrderDispatched": _dispatched, "ExceptionReported": _exception,
    "OrderDelivered": _delivered, "DeliveryRefused": _refused, "ReturnStarted": _return_started,
    "ReturnCompleted": _nothing, "DamageClaimOpened": _claim_opened, "DamageClaimSettled": _claim_settled,
    "OrderCancelled": _cancelled,
}


def apply_event(view: View | None, event_type: str, event: Event, status: str, stage: str) -> View:
    """The view after a legal ``event`` (already validated, transition decided).

    Copy-on-write: the new view shares every part the event did not change with ``view``
    (which is never modified), so an encoder can reuse the bytes of unchanged parts."""
    if event_type == "OrderCreated":
        new = _created(view, event)
    else:
        assert view is not None
        new = dict(view)
        HANDLERS[event_type](new, event)
    at = ms(event["event_time"])
    new["status"] = status
    new["version"] = event["version"]
    new["updated_at"] = max(new["updated_at"], at)
    new["stages"] = {**new["stages"], stage: at}
    return new
