"""The public JSON form of an order projection (seed scenario 1) and the
merge of a driver's live GPS position into it. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.timefmt import iso

ACTIVE_DELIVERY = frozenset({"DELIVERING", "EXCEPTION_HANDLING"})


def _point(p: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    out: dict[str, Any] = {"lat": p["lat"], "lng": p["lng"]}
    if "at" in p:
        out["at"] = iso(p["at"])
    if "source" in p:
        out["source"] = p["source"]
    return out


def public_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase JSON for APIs, the CLI and Redis readers; times are ISO-8601 UTC."""
    driver = view["driver"]
    driver_info = None
    if driver is not None:
        driver_info = {
            "driverId": driver["driver_id"], "name": driver["name"], "phone": driver["phone"],
            "vehicleId": driver["vehicle_id"], "vehiclePlate": driver["vehicle_plate"],
            "location": _point(view["last_location"]),
        }
    exc = view["exception"]
    sig = view["signature"]
    claim = view["claim"]
    pay = view["payment"]
    return {
        "orderId": view["order_id"],
        "status": view["status"],
        "version": view["version"],
        "customerId": view["customer_id"],
        "warehouseId": view["warehouse_id"],
        "updatedAt": iso(view["updated_at"]),
        "driverInfo": driver_info,
        "eta": iso(view["eta"]),
        "items": [
            {"lineNo": ln["line_no"], "sku": ln["sku"], "name": ln["name"], "quantity": ln["ordered"],
             "unit": ln["unit"].lower(), "available": ln["available"], "short": ln["short"], "picked": ln["picked"],
             "expectedKg": ln["expected_kg"], "measuredKg": ln["measured_kg"], "delivered": ln["delivered"],
             "returned": ln["returned"]}
            for ln in view["lines"]
        ],
        "shortLines": list(view["short_lines"]),
        "stages": {stage: iso(at) for stage, at in sorted(view["stages"].items())},
        "deliveryWindow": {"start": iso(view["delivery_window_start"]), "end": iso(view["delivery_window_end"])},
        "destination": _point(view["destination"]),
        "dispatchCount": view["dispatch_count"],
        "exception": None if exc is None else {"reasonCode": exc["reason_code"], "description": exc["description"],
                                               "at": iso(exc["at"])},
        "signature": None if sig is None else {"receiverName": sig["receiver_name"],
                                               "signatureRef": sig["signature_ref"], "photoRef": sig["photo_ref"],
                                               "at": iso(sig["at"])},
        "payment": None if pay is None else {"paymentId": pay["payment_id"], "amountCents": pay["amount_cents"],
                                             "method": pay["method"]},
        "totalCents": view["total_cents"],
        "cancelReason": view["cancel_reason"],
        "refusalReason": view["refusal_reason"],
        "claim": None if claim is None else {"claimId": claim["claim_id"], "claimedCents": claim["claimed_cents"],
                                             "settledCents": claim["settled_cents"],
                                             "resolution": claim["resolution"]},
        "rejectedEvents": view["rejected_events"],
    }


def with_live_position(public: dict[str, Any], position: Mapping[str, Any] | None) -> dict[str, Any]:
    """Put the driver's latest GPS fix (``{"lat","lng","at"(ms),"driver_id"}``) in
    ``driverInfo.location`` when the order is out for delivery with that driver
    and the fix is newer than what the order events knew."""
    info = public.get("driverInfo")
    if position is None or info is None or public["status"] not in ACTIVE_DELIVERY:
        return public
    if position.get("driver_id") != info["driverId"]:
        return public
    current = info.get("location")
    fix_iso = iso(int(position["at"]))
    if current is not None and current.get("at") is not None and current["at"] >= (fix_iso or ""):
        return public
    new_info = {**info, "location": {"lat": position["lat"], "lng": position["lng"], "at": fix_iso, "source": "gps"}}
    return {**public, "driverInfo": new_info}


def with_open_alerts(public: dict[str, Any], alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The order's open alerts (``kuailv.alerts.Alert`` records) as ``openAlerts``, oldest first."""
    return {**public, "openAlerts": [
        {"alertId": a["alert_id"], "ruleId": a["rule_id"], "severity": a["severity"], "openedAt": iso(a["opened_at"]),
         "message": a["message"], "audience": list(a["audience"])} for a in alerts]}


def with_live_eta(public: dict[str, Any], eta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ETA from the van's GPS (an ``OrderEta`` record) as ``eta`` + ``etaUpdatedAt``, while the
    order is out for delivery on that dispatch; otherwise the view's own ``eta`` (set at dispatch)."""
    if eta is None or public["status"] not in ACTIVE_DELIVERY or eta["dispatch_count"] != public["dispatchCount"]:
        return public
    return {**public, "eta": iso(eta["eta"]), "etaUpdatedAt": iso(eta["computed_at"]),
            "etaSource": f"gps/{eta['estimator']}"}
