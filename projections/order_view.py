"""The public JSON form of an order projection (seed scenario 1) and the
merges of what is derived downstream of it: the driver's live GPS position, the
order's tracking record (GPS ETA and geofence stage times), its open alerts. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.timefmt import iso

ACTIVE_DELIVERY = frozenset({"DELIVERING", "EXCEPTION_HANDLING"})
# stage name in the public view -> OrderEta field (projections.stage_times): derived from the van's
# geofences and merged on read; no order event records a stage of these names
DERIVED_STAGES = {"arrived_warehouse": "arrived_warehouse_at", "arrived_customer": "arrived_customer_at",
                  "left_customer": "left_customer_at"}


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
    """camelCase JSON for APIs, the CLI and Redis readers; times are ISO-8601 UTC. Personal fields
    (``driverInfo.name``/``phone``, ``signature.receiverName``) are copied as they are: sealed dicts
    for data written through the command side, opened only at the edge (``privacy.fields.reveal_view``)."""
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
    """Merge the order's tracking record (an ``OrderEta`` from the van's GPS) of the view's current
    dispatch: its stage times (arrived at the warehouse, arrived at / left the customer: derived
    from geofences, never order events) join ``stages`` in any status; its ETA replaces ``eta`` (with
    ``etaUpdatedAt``, ``etaSource`` and, from a learnt model, ``lateRisk``) while the order is out for
    delivery, otherwise the view keeps its own ``eta`` (set at dispatch). A record of another dispatch
    changes nothing."""
    if eta is None or eta["dispatch_count"] != public["dispatchCount"]:
        return public
    out = public
    derived = {stage: iso(eta[field]) for stage, field in DERIVED_STAGES.items() if eta.get(field) is not None}
    if derived:
        out = {**out, "stages": dict(sorted({**public["stages"], **derived}.items()))}
    if public["status"] in ACTIVE_DELIVERY:
        out = {**out, "eta": iso(eta["eta"]), "etaUpdatedAt": iso(eta["computed_at"]),
               "etaSource": f"gps/{eta['estimator']}"}
        if eta.get("late_risk") is not None:  # a learnt model's delay risk (OrderEta v3)
            out["lateRisk"] = eta["late_risk"]
    return out


def with_redispatch(public: dict[str, Any], suggestion: Mapping[str, Any] | None) -> dict[str, Any]:
    """``redispatchSuggestion``: who should take the order over after its van stopped (``projections.fleet``),
    while it is the current delivery attempt's (a proposal, not an order event; a later dispatch supersedes it)."""
    if suggestion is None or suggestion["dispatch_count"] != public["dispatchCount"]:
        return public
    return {**public, "redispatchSuggestion": {
        "toDriverId": suggestion["to_driver_id"], "toVehicleId": suggestion["to_vehicle_id"],
        "distanceM": suggestion["distance_m"], "eta": None if suggestion["eta"] is None else iso(suggestion["eta"]),
        "decidedAt": iso(suggestion["decided_at"]), "reason": suggestion["reason"],
        "excluded": suggestion["excluded"]}}
