"""What a record means to subscribers: kinds, types, ordering keys, bodies, and the filters as a table."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from projections.order_state import fold_all
from schemas.codec import AvroCodec
from simulator.events import T0, order_story
from webhooks.events import body, event_of, matches
from webhooks.subscriptions import Filters, check_url

CODEC = AvroCodec(epoch_ms=True)
ORDER = "KL20260601001"


def order_state() -> dict[str, Any]:
    view = fold_all(order_story(ORDER, T0, ending="signed"))[0][ORDER]["view"]
    return CODEC.decode(CODEC.encode("OrderState", view)).value  # as the worker reads it off the topic


def alert(**over: Any) -> dict[str, Any]:
    return {"alert_id": f"late-delivery/order/{ORDER}", "rule_id": "late-delivery", "rule_version": 1,
            "severity": "CRITICAL", "status": "OPEN", "order_id": ORDER, "driver_id": "DRV-001", "vehicle_id": "VAN-1",
            "warehouse_id": "WH-BJ-CY-01", "customer_id": "CUST-1", "opened_at": T0, "updated_at": T0,
            "resolved_at": None, "occurrences": 1, "message": "late", "evidence": {"window_end": str(T0)},
            "location": None, "audience": ["OPERATOR", "CUSTOMER_SERVICE", "MERCHANT"], **over}


def test_an_order_change_carries_the_public_view() -> None:
    state = order_state()
    event = event_of("OrderState", state)
    assert (event.kind, event.type, event.order_key) == ("order_change", "order.changed", ORDER)
    assert event.dedupe_key == f"order/{ORDER}@{state['version']}/0"
    assert event.customer_id == state["customer_id"] and event.driver_id == state["driver"]["driver_id"]
    doc = orjson.loads(body(event, None))
    assert doc["type"] == "order.changed" and doc["timestamp"].endswith("Z")
    assert doc["data"]["orderId"] == ORDER and doc["data"]["status"] == "SIGNED"
    assert doc["data"]["driverInfo"]["phone"]  # contact data for everyone but warehouse staff
    redacted = orjson.loads(body(event, "warehouse_staff"))["data"]
    assert redacted["driverInfo"]["phone"] is None and redacted["destination"] is None


@pytest.mark.parametrize(("over", "kind", "type_"), [
    ({}, "alert", "alert.opened"),
    ({"updated_at": T0 + 5}, "alert", "alert.updated"),
    ({"status": "RESOLVED", "resolved_at": T0 + 9, "updated_at": T0 + 9}, "alert", "alert.resolved"),
    ({"severity": "INFO", "alert_id": f"driver-nearby/order/{ORDER}#1"}, "notice", "notice.opened"),
])
def test_alert_kinds_and_types(over: dict[str, Any], kind: str, type_: str) -> None:
    event = event_of("Alert", alert(**over))
    assert (event.kind, event.type, event.order_key) == (kind, type_, ORDER)
    assert orjson.loads(body(event, "merchant"))["data"]["alert_id"] == alert(**over)["alert_id"]


def test_an_alert_about_no_order_is_ordered_by_its_id_and_changes_dedupe_separately() -> None:
    a = event_of("Alert", alert(order_id=None, alert_id="cold-chain-breach/vehicle/VAN-1/CHILLED"))
    assert a.order_key == "alert/cold-chain-breach/vehicle/VAN-1/CHILLED"
    b = event_of("Alert", alert(order_id=None, alert_id="cold-chain-breach/vehicle/VAN-1/CHILLED", occurrences=2))
    assert a.dedupe_key != b.dedupe_key


def test_other_record_types_are_not_delivered() -> None:
    with pytest.raises(ValueError, match="GpsPing records are not delivered"):
        event_of("GpsPing", {})


ALERT = event_of("Alert", alert())
CHANGE = event_of("OrderState", order_state())
# filters -> (matches the alert, matches the order change)
FILTER_TABLE = [
    (Filters(), True, True),
    (Filters(kinds=("alert",)), True, False),
    (Filters(kinds=("order_change",)), False, True),
    (Filters(kinds=("notice",)), False, False),
    (Filters(role="merchant", customer_id="CUST-1"), True, False),  # the order is another customer's
    (Filters(role="driver", driver_id="DRV-001"), False, True),  # not in the alert's audience; drives the order
    (Filters(role="operator"), True, True),
    (Filters(order_id=ORDER), True, True),
    (Filters(order_id="KL-OTHER"), False, False),
    (Filters(warehouse_id="WH-BJ-CY-01"), True, True),
    (Filters(customer_id="CUST-0001"), False, True),
    (Filters(kinds=("alert", "order_change"), driver_id="DRV-001"), True, True),
    (Filters(driver_id="DRV-002"), False, False),
]


@pytest.mark.parametrize(("filters", "on_alert", "on_change"), FILTER_TABLE)
def test_filters(filters: Filters, on_alert: bool, on_change: bool) -> None:
    assert matches(filters, ALERT) is on_alert
    assert matches(filters, CHANGE) is on_change


@pytest.mark.parametrize(("filters", "field"), [
    (Filters(kinds=()), "kinds"), (Filters(kinds=("alert", "gps")), "kinds"), (Filters(role="admin"), "role"),
    (Filters(role="merchant"), "customer_id"), (Filters(role="customer"), "customer_id"),
    (Filters(role="driver"), "driver_id"), (Filters(role="warehouse_staff"), "warehouse_id"),
])
def test_unusable_filters_name_the_field(filters: Filters, field: str) -> None:
    assert field in filters.problems()


def test_usable_filters_have_no_problems() -> None:
    assert Filters().problems() == {}
    assert Filters(role="merchant", customer_id="CUST-1").problems() == {}


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http:///nohost", "http://h:99999/",
                                 "javascript:alert(1)"])
def test_only_http_urls_are_endpoints(url: str) -> None:
    with pytest.raises(ValueError, match="url"):
        check_url(url)


def test_http_and_https_urls_are_kept_as_given() -> None:
    for url in ("http://127.0.0.1:8080/hooks?x=1", "https://hooks.example.com/kuailv"):
        assert check_url(url) == url
