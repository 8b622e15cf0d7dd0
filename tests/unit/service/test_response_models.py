"""The REST response models (service.models) declare every field the reads return, and a body passed
through them is unchanged (the scenario-1 JSON keeps its shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from projections.order_state import fold_all
from projections.order_view import public_view, with_live_eta, with_live_position, with_open_alerts, with_redispatch
from service import models
from service.auth import Principal
from service.policy import redact
from simulator.events import MINUTE, T0, order_story

ALERT = {"alert_id": "late/order/KLM1", "rule_id": "late-delivery", "rule_version": 1, "severity": "WARNING",
         "status": "OPEN", "order_id": "KLM1", "driver_id": "DRV-001", "vehicle_id": "VAN-001",
         "warehouse_id": "WH-BJ-CY-01", "customer_id": "CUST-0001", "opened_at": T0, "updated_at": T0,
         "resolved_at": None, "occurrences": 1, "message": "late", "evidence": {"status": "DELIVERING"},
         "location": {"lat": 39.9, "lng": 116.4}, "audience": ["OPERATOR", "CUSTOMER"]}


def full_doc() -> dict[str, Any]:
    """An order out for delivery with every merge the Redis read does (live fix, GPS ETA, alerts, re-dispatch)."""
    events = order_story("KLM1", T0, ending="redispatched")
    (state,) = fold_all(events[:-1])[0].values()  # re-dispatched, not yet delivered
    view = public_view(state["view"])
    fix = {"driver_id": "DRV-002", "at": T0 + 3 * 60 * MINUTE, "lat": 39.91, "lng": 116.41}
    eta = {"dispatch_count": 2, "eta": T0 + 4 * 60 * MINUTE, "computed_at": T0 + 3 * 60 * MINUTE,
           "estimator": "distance-speed/v1", "arrived_warehouse_at": T0 + 50 * MINUTE}
    suggestion = {"dispatch_count": 2, "to_driver_id": "DRV-003", "to_vehicle_id": "VAN-003", "distance_m": 812.5,
                  "eta": None, "decided_at": T0, "reason": "nearest", "excluded": {"DRV-002": "reporting driver"}}
    doc = with_redispatch(with_open_alerts(with_live_eta(with_live_position(view, fix), eta), [ALERT]), suggestion)
    return {**doc, "source": "redis"}


def round_trip(model: type[BaseModel], body: dict[str, Any]) -> Any:
    return model.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True)


def test_the_order_model_declares_every_field_and_keeps_the_body() -> None:
    doc = full_doc()
    assert {"etaUpdatedAt", "openAlerts", "redispatchSuggestion"} <= set(doc)
    assert set(doc) <= set(models.Order.model_fields), set(doc) - set(models.Order.model_fields)
    assert round_trip(models.Order, doc) == doc
    staff = redact(Principal("u", "warehouse_staff", "WH-BJ-CY-01"), doc)
    assert round_trip(models.Order, staff) == staff
    bare = public_view(fold_all(order_story("KLM2", T0, ending="cancelled"))[0]["KLM2"]["view"])
    assert round_trip(models.Order, {**bare, "source": "log"}) == {**bare, "source": "log"}


def test_alerts_positions_and_tracks_keep_their_bodies() -> None:
    acked = {**ALERT, "acknowledged": {"by": "u-operator", "at": "2026-06-01T06:50:00.000Z"}}  # as the reads merge it
    assert set(acked) == set(models.Alert.model_fields)
    for alert in (acked, {**ALERT, "acknowledged": None}):
        assert round_trip(models.Alerts, {"alerts": [alert]}) == {"alerts": [alert]}
    position = {"driver_id": "DRV-1", "vehicle_id": "VAN-1", "event_id": "e1", "at": T0, "lat": 39.9, "lng": 116.4,
                "speed_kmh": 30.5, "heading_deg": 90.0,
                "load": {"at": T0, "vehicle_id": "VAN-1", "load_kg": 42.0, "orders_on_board": 2, "order_ids": ["KL1"]}}
    assert round_trip(models.DriverPosition, position) == position
    track = {"orderId": "KL1", "driverId": "DRV-1", "from": "2026-06-01T06:45:00.000Z", "to": None, "total": 1,
             "thinned": False, "points": [{"at": "2026-06-01T06:45:05.000Z", "lat": 39.9, "lng": 116.4,
                                           "speedKmh": None, "headingDeg": 1.0}]}
    assert round_trip(models.Track, track) == track
