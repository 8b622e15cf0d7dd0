"""The public JSON of an order (seed scenario 1) and the live GPS merge."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from projections.order_state import fold_all
from projections.order_status import TRANSITIONS, OrderStatus
from projections.order_view import DERIVED_STAGES, public_view, with_live_eta, with_live_position
from schemas.codec import AvroCodec
from simulator.events import MINUTE, T0, order_story

ORDER_ID = "KL20260601001"
DISPATCHED_AT = T0 + 45 * MINUTE  # version 9 of the signed story: 06:45Z


def view_after(ending: str, events: int | None = None) -> dict[str, Any]:
    story = order_story(ORDER_ID, T0, ending=ending)
    states, rejections = fold_all(story[:events])
    assert rejections == []
    return states[ORDER_ID]["view"]


def out_for_delivery() -> dict[str, Any]:
    return public_view(view_after("signed", 9))


# --- public_view ---------------------------------------------------------------------

def test_out_for_delivery_matches_seed_scenario_1():
    public = out_for_delivery()

    seed_shape = {
        "orderId": public["orderId"],
        "status": public["status"],
        "driverInfo": {"name": public["driverInfo"]["name"], "phone": public["driverInfo"]["phone"],
                       "location": {k: public["driverInfo"]["location"][k] for k in ("lat", "lng")}},
        "eta": public["eta"],
        "items": [{k: item[k] for k in ("name", "quantity", "unit")} for item in public["items"]],
    }
    assert seed_shape == {
        "orderId": ORDER_ID,
        "status": "DELIVERING",
        "driverInfo": {"name": "张三", "phone": "13800001234", "location": {"lat": 39.9625, "lng": 116.4980}},
        "eta": "2026-06-01T07:30:00.000Z",
        "items": [
            {"name": "有机菠菜", "quantity": 5.0, "unit": "kg"},
            {"name": "五花肉", "quantity": 3.0, "unit": "kg"},
            {"name": "鲜牛奶 1L", "quantity": 12.0, "unit": "piece"},
        ],
    }


def test_out_for_delivery_full_public_view():
    assert out_for_delivery() == {
        "orderId": ORDER_ID,
        "status": "DELIVERING",
        "version": 9,
        "customerId": "CUST-0001",
        "warehouseId": "WH-BJ-CY-01",
        "updatedAt": "2026-06-01T06:45:00.000Z",
        "driverInfo": {
            "driverId": "DRV-001", "name": "张三", "phone": "13800001234", "vehicleId": "VAN-001",
            "vehiclePlate": "京A·12345",
            "location": {"lat": 39.9625, "lng": 116.4980, "at": "2026-06-01T06:45:00.000Z",
                         "source": "OrderDispatched"},
        },
        "eta": "2026-06-01T07:30:00.000Z",
        "items": [
            {"lineNo": 1, "sku": "VEG-SPINACH-ORG", "name": "有机菠菜", "quantity": 5.0, "unit": "kg",
             "available": 5.0, "short": 0.0, "picked": 5.0, "expectedKg": 5.0, "measuredKg": 4.9,
             "delivered": None, "returned": 0.0},
            {"lineNo": 2, "sku": "MEAT-PORK-BELLY", "name": "五花肉", "quantity": 3.0, "unit": "kg",
             "available": 2.0, "short": 1.0, "picked": 2.0, "expectedKg": 2.0, "measuredKg": 1.96,
             "delivered": None, "returned": 0.0},
            {"lineNo": 3, "sku": "DAIRY-MILK-1L", "name": "鲜牛奶 1L", "quantity": 12.0, "unit": "piece",
             "available": 12.0, "short": 0.0, "picked": 12.0, "expectedKg": 12.36, "measuredKg": 12.36,
             "delivered": None, "returned": 0.0},
        ],
        "shortLines": [2],
        "stages": {
            "created": "2026-06-01T06:00:00.000Z", "dispatched": "2026-06-01T06:45:00.000Z",
            "packed": "2026-06-01T06:40:00.000Z", "paid": "2026-06-01T06:10:00.000Z",
            "picking_started": "2026-06-01T06:20:00.000Z", "stock_checked": "2026-06-01T06:15:00.000Z",
            "weighed": "2026-06-01T06:35:00.000Z",
        },
        "deliveryWindow": {"start": "2026-06-01T07:00:00.000Z", "end": "2026-06-01T08:00:00.000Z"},
        "destination": {"lat": 39.9042, "lng": 116.4074},
        "dispatchCount": 1,
        "exception": None,
        "signature": None,
        "payment": {"paymentId": f"PAY-{ORDER_ID}", "amountCents": 33600, "method": "WECHAT_PAY"},
        "totalCents": 33600,
        "cancelReason": None,
        "refusalReason": None,
        "claim": None,
        "rejectedEvents": 0,
    }


def test_stages_are_listed_in_name_order():
    assert list(out_for_delivery()["stages"]) == sorted(out_for_delivery()["stages"])


@pytest.mark.parametrize("ending", ["signed", "redispatched", "refused", "cancelled", "out_of_stock"])
def test_public_view_is_plain_json_and_the_same_from_decoded_events(ending: str):
    codec = AvroCodec()
    story = order_story(ORDER_ID, T0, ending=ending)
    decoded = [(d.record_type, d.value) for d in (codec.decode(codec.encode(t, e)) for t, e in story)]
    from_builders = public_view(view_after(ending))

    assert json.loads(json.dumps(from_builders, ensure_ascii=False)) == from_builders
    assert public_view(fold_all(decoded)[0][ORDER_ID]["view"]) == from_builders


def test_signed_order_shows_the_signature_and_no_eta():
    public = public_view(view_after("signed"))
    assert public["status"] == "SIGNED"
    assert public["eta"] is None
    assert public["signature"] == {"receiverName": "李厨师", "signatureRef": f"sig/{ORDER_ID}.png", "photoRef": None,
                                   "at": "2026-06-01T06:50:00.000Z"}
    assert [item["delivered"] for item in public["items"]] == [5.0, 2.0, 12.0]
    assert public["driverInfo"]["location"] == {"lat": 39.9042, "lng": 116.4074, "at": "2026-06-01T06:50:00.000Z",
                                                "source": "OrderDelivered"}


def test_redispatched_order_shows_the_new_driver_and_the_exception():
    public = public_view(view_after("redispatched"))
    assert public["dispatchCount"] == 2
    assert public["driverInfo"]["driverId"] == "DRV-002"
    assert public["exception"] == {"reasonCode": "TRAFFIC_ACCIDENT", "description": "追尾事故, 车辆无法继续行驶",
                                   "at": "2026-06-01T06:50:00.000Z"}


def test_exception_clears_the_eta_and_moves_the_driver():
    public = public_view(view_after("redispatched", 10))
    assert public["status"] == "EXCEPTION_HANDLING"
    assert public["eta"] is None
    assert public["driverInfo"]["location"] == {"lat": 39.93, "lng": 116.45, "at": "2026-06-01T06:50:00.000Z",
                                                "source": "ExceptionReported"}


def test_cancelled_order_has_no_driver():
    public = public_view(view_after("cancelled"))
    assert (public["status"], public["driverInfo"], public["cancelReason"]) == (
        "CANCELLED", None, "customer changed plans")


def test_refused_order_shows_the_reason():
    public = public_view(view_after("refused"))
    assert (public["status"], public["refusalReason"]) == ("RETURNING", "菜叶发黄, 客户拒收")


# --- with_live_position ----------------------------------------------------------------

def fix(at: int, driver_id: str = "DRV-001") -> dict[str, Any]:
    return {"lat": 39.9301, "lng": 116.4402, "at": at, "driver_id": driver_id}


def test_newer_fix_of_the_driver_replaces_the_location():
    public = out_for_delivery()
    before = copy.deepcopy(public)

    live = with_live_position(public, fix(DISPATCHED_AT + 1))

    assert public == before, "the input is not modified"
    assert live["driverInfo"]["location"] == {"lat": 39.9301, "lng": 116.4402, "at": "2026-06-01T06:45:00.001Z",
                                              "source": "gps"}
    assert {**live, "driverInfo": None} == {**public, "driverInfo": None}
    assert {k: v for k, v in live["driverInfo"].items() if k != "location"} == {
        k: v for k, v in public["driverInfo"].items() if k != "location"}


@pytest.mark.parametrize("at", [DISPATCHED_AT, DISPATCHED_AT - 1, T0], ids=["same-time", "1ms-older", "older"])
def test_fix_not_newer_than_the_known_location_is_ignored(at: int):
    public = out_for_delivery()
    assert with_live_position(public, fix(at)) == public


def test_fix_of_another_driver_is_ignored():
    public = out_for_delivery()
    assert with_live_position(public, fix(DISPATCHED_AT + MINUTE, "DRV-002")) == public


def test_no_fix_changes_nothing():
    public = out_for_delivery()
    assert with_live_position(public, None) == public


@pytest.mark.parametrize("status", list(OrderStatus))
def test_fix_applies_only_while_out_for_delivery(status: OrderStatus):
    public = {**out_for_delivery(), "status": status.value}
    live = with_live_position(public, fix(DISPATCHED_AT + MINUTE))
    applied = live["driverInfo"]["location"]["source"] == "gps"
    assert applied == (status in (OrderStatus.DELIVERING, OrderStatus.EXCEPTION_HANDLING))


def test_fix_during_exception_handling_applies():
    public = public_view(view_after("redispatched", 10))
    live = with_live_position(public, fix(T0 + 51 * MINUTE))
    assert live["driverInfo"]["location"]["at"] == "2026-06-01T06:51:00.000Z"


def test_after_a_redispatch_only_the_new_driver_moves_the_order():
    public = public_view(view_after("redispatched", 11))
    assert public["driverInfo"]["driverId"] == "DRV-002"
    later = T0 + 60 * MINUTE
    assert with_live_position(public, fix(later, "DRV-001")) == public
    assert with_live_position(public, fix(later, "DRV-002"))["driverInfo"]["location"]["source"] == "gps"


def test_order_without_a_driver_ignores_fixes():
    public = public_view(view_after("signed", 4))
    assert public["status"] == "PICKING"
    assert with_live_position(public, fix(DISPATCHED_AT)) == public


# --- with_live_eta: the order's tracking record (GPS ETA, geofence stage times) ----------

def tracking(dispatch: int = 1, **stage_times: int | None) -> dict[str, Any]:
    """An ``OrderEta`` as Redis ``eta:{order}`` holds it (times in epoch ms)."""
    return {"order_id": ORDER_ID, "driver_id": "DRV-001", "vehicle_id": "VAN-001", "dispatch_count": dispatch,
            "eta": T0 + 80 * MINUTE, "computed_at": T0 + 60 * MINUTE, "distance_m": 1200.0, "stops_before": 0,
            "speed_kmh": 24.0, "estimator": "distance-speed/v1", "arrived_warehouse_at": None,
            "arrived_customer_at": None, "left_customer_at": None, "updated_at": T0 + 60 * MINUTE, **stage_times}


def test_out_for_delivery_shows_the_gps_eta_and_the_stage_times():
    public = out_for_delivery()
    before = copy.deepcopy(public)

    live = with_live_eta(public, tracking(arrived_warehouse_at=DISPATCHED_AT - 10 * MINUTE))

    assert public == before, "the input is not modified"
    assert (live["eta"], live["etaUpdatedAt"], live["etaSource"]) == (
        "2026-06-01T07:20:00.000Z", "2026-06-01T07:00:00.000Z", "gps/distance-speed/v1")
    assert live["stages"] == {**public["stages"], "arrived_warehouse": "2026-06-01T06:35:00.000Z"}
    assert list(live["stages"]) == sorted(live["stages"])
    assert {k: v for k, v in live.items() if k not in ("eta", "etaUpdatedAt", "etaSource", "stages")} == {
        k: v for k, v in public.items() if k not in ("eta", "stages")}


def test_a_signed_order_keeps_its_stage_times_but_shows_no_eta():
    public = public_view(view_after("signed"))
    record = tracking(arrived_warehouse_at=T0 + 40 * MINUTE, arrived_customer_at=T0 + 48 * MINUTE,
                      left_customer_at=T0 + 52 * MINUTE)

    live = with_live_eta(public, record)

    assert live["eta"] is None and "etaUpdatedAt" not in live
    assert {k: live["stages"][k] for k in DERIVED_STAGES} == {
        "arrived_warehouse": "2026-06-01T06:40:00.000Z", "arrived_customer": "2026-06-01T06:48:00.000Z",
        "left_customer": "2026-06-01T06:52:00.000Z"}
    assert live["stages"]["delivered"] == public["stages"]["delivered"]


def test_a_record_of_another_dispatch_changes_nothing():
    public = public_view(view_after("redispatched", 11))
    assert public["dispatchCount"] == 2
    assert with_live_eta(public, tracking(1, arrived_customer_at=T0 + 48 * MINUTE)) == public
    assert with_live_eta(public, None) == public
    assert "arrived_customer" in with_live_eta(public, tracking(2, arrived_customer_at=T0 + 70 * MINUTE))["stages"]


def test_a_version_1_record_has_no_stage_times():
    public = out_for_delivery()
    old = {k: v for k, v in tracking().items() if k not in (*DERIVED_STAGES.values(), "updated_at")}
    live = with_live_eta(public, old)
    assert live["stages"] == public["stages"] and live["eta"] == "2026-06-01T07:20:00.000Z"


def test_unreached_stages_are_not_listed():
    public = out_for_delivery()
    assert with_live_eta(public, tracking())["stages"] == public["stages"]


def test_derived_stage_names_are_not_order_event_stages():
    assert not set(DERIVED_STAGES) & {t.stage for t in TRANSITIONS.values()}
