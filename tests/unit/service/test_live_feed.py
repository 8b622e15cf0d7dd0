"""The live feed's pure parts and its hub: subscribe messages, cursors, catch-up ranges, routing by interest,
per-change visibility, redaction, slow clients."""

from __future__ import annotations

import pytest

from service import live
from service.auth import Principal
from service.live import Client, Hub, Owners, to_change
from service.live_changes import (
    BadSubscription,
    Change,
    Interest,
    Positions,
    catch_up_ranges,
    decode_cursor,
    encode_cursor,
    matches,
    parse_subscribe,
)
from service.policy import change_visible, subscription_access


def who(role: str, tenant: str | None = None) -> Principal:
    return Principal(f"u-{role}", role, tenant)


def change(offset: int, *, kind: str = "order", order: str = "O1", customer: str = "C1", driver: str | None = "D1",
           warehouse: str = "W1", partition: int = 0, topic: str = "state") -> Change:
    data = {"orderId": order, "version": offset, "driverInfo": {"driverId": driver, "phone": "138"},
            "destination": {"address": "x"}, "signature": None}
    return Change(kind, topic, partition, offset, order, customer, driver, warehouse, data)


def test_subscribe_messages() -> None:
    interests, resume = parse_subscribe({"subscribe": [{"order": "O1"}, {"alerts": True}], "resume": "abc"})
    assert interests == [Interest("order", "O1"), Interest("alerts")] and resume == "abc"
    assert parse_subscribe({"subscribe": {"driver": "D1"}}) == ([Interest("driver", "D1")], None)
    for bad in ({}, {"subscribe": []}, {"subscribe": [{"planet": "x"}]}, {"subscribe": [{"order": ""}]},
                {"subscribe": [{"order": "O1", "driver": "D1"}]}, {"subscribe": {"order": "O1"}, "resume": 5}):
        with pytest.raises(BadSubscription):
            parse_subscribe(bad)


def test_cursors_round_trip_and_refuse_garbage() -> None:
    pos = {"kuailv.order-state.v1": [3, 0, 17], "kuailv.alerts.v1": [5]}
    assert decode_cursor(encode_cursor(pos)) == pos
    for bad in ("", "!!!", encode_cursor({"t": [-1]}), "eyJ2IjoyLCJwIjp7fX0"):  # the last: version 2
        with pytest.raises(BadSubscription):
            decode_cursor(bad)


def test_catch_up_ranges_cover_exactly_the_gap() -> None:
    ranges = catch_up_ranges({"a": [2, 5], "b": [0]}, {"a": [4, 5], "b": [3], "c": [9]})
    assert ranges == {("a", 0): (2, 4), ("b", 0): (0, 3)}  # a/1 caught up, c never seen: starts live


def test_interest_matching() -> None:
    c = change(1)
    assert matches([Interest("customer", "C1")], c) and matches([Interest("driver", "D1")], c)
    assert not matches([Interest("customer", "C2"), Interest("alerts")], c)
    assert matches([Interest("alerts")], change(1, kind="alert"))


@pytest.mark.parametrize(("role", "tenant", "kind", "key", "allowed"), [
    ("operator", None, "customer", "C1", True), ("customer_service", None, "alerts", None, True),
    ("merchant", "C1", "customer", "C1", True), ("merchant", "C1", "customer", "C2", False),
    ("customer", "C1", "alerts", None, False), ("driver", "D1", "driver", "D1", True),
    ("driver", "D1", "driver", "D2", False), ("driver", "D1", "customer", "C1", False),
    ("warehouse_staff", "W1", "warehouse", "W1", True), ("warehouse_staff", "W1", "warehouse", "W2", False),
    ("warehouse_staff", "W1", "customer", "C1", False), ("operator", None, "fleet", None, True),
    ("customer_service", None, "fleet", None, True), ("merchant", "C1", "fleet", None, False),
    ("driver", "D1", "fleet", None, False), ("warehouse_staff", "W1", "fleet", None, False),
])
def test_who_may_follow_what(role: str, tenant: str | None, kind: str, key: str | None, allowed: bool) -> None:
    access = subscription_access(who(role, tenant), kind, key)
    assert access.allowed is allowed and (allowed or access.reason)


def test_a_change_is_visible_to_its_owners_only() -> None:
    assert change_visible(who("customer_service"), "C1", "D1", "W1")
    assert change_visible(who("merchant", "C1"), "C1", "D1", "W1")
    assert not change_visible(who("merchant", "C2"), "C1", "D1", "W1")
    assert not change_visible(who("driver", "D1"), "C1", "D2", "W1")  # reassigned to another driver
    assert not change_visible(who("driver", "D1"), "C1", None, "W1")


def test_the_hub_routes_by_interest_and_moves_the_cursor() -> None:
    hub = Hub()
    merchant = Client(who("merchant", "C1"), [Interest("customer", "C1")])
    other = Client(who("merchant", "C2"), [Interest("customer", "C2")])
    service = Client(who("customer_service"), [Interest("alerts")])
    for c in (merchant, other, service):
        hub.add(c)
    a, b = change(7), change(8, kind="alert", partition=1, topic="alerts")
    hub.publish([a, b], {"state": [(0, 7)], "alerts": [(1, 8)]})
    assert merchant.queue.qsize() == 2 and other.queue.qsize() == 0 and service.queue.qsize() == 1
    assert decode_cursor(a.cursor) == {"state": [8]}  # after the change itself
    assert decode_cursor(b.cursor) == {"state": [8], "alerts": [0, 9]}
    hub.remove(merchant)
    hub.publish([change(9)], {"state": [(0, 9)]})
    assert merchant.queue.qsize() == 2 and hub.position == {"state": [10], "alerts": [0, 9]}


def test_warehouse_staff_frames_are_redacted_and_others_are_not() -> None:
    hub = Hub()
    staff = Client(who("warehouse_staff", "W1"), [Interest("warehouse", "W1")])
    driver = Client(who("driver", "D1"), [Interest("driver", "D1")])
    hub.add(staff)
    hub.add(driver)
    hub.publish([change(1)], {"state": [(0, 1)]})
    frame = staff.queue.get_nowait()
    assert frame is not None and '"phone":null' in frame and '"destination":null' in frame
    assert '"phone":"138"' in driver.queue.get_nowait()


def test_a_client_that_falls_behind_is_closed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "QUEUE_LIMIT", 3)
    hub = Hub()
    slow = Client(who("customer_service"), [Interest("alerts")])
    hub.add(slow)
    hub.publish([change(i, kind="alert") for i in range(6)], {"state": [(0, i) for i in range(6)]})
    frames = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert frames[-1] is None and len(frames) == 4 and slow.overflowed  # three changes, then the close signal


def test_tracking_records_learn_their_owners_from_order_changes() -> None:
    looked_up: list[str] = []
    owners = Owners(lambda oid: looked_up.append(oid) or ("C9", None, "W9"))
    view = {"order_id": "O1", "customer_id": "C1", "warehouse_id": "W1", "status": "DELIVERING", "version": 3}
    eta = to_change("eta", "etas", 0, 1, {"order_id": "O2", "driver_id": "D2"}, owners)
    assert (eta.customer_id, eta.warehouse_id) == ("C9", "W9") and looked_up == ["O2"]
    owners.learn(view["order_id"], ("C1", "D1", "W1"))
    eta = to_change("eta", "etas", 0, 2, {"order_id": "O1", "driver_id": "D1"}, owners)
    assert (eta.customer_id, eta.driver_id) == ("C1", "D1") and looked_up == ["O2"]


def ping(driver: str, at: int, lat: float = 39.9) -> dict[str, object]:
    return {"driver_id": driver, "vehicle_id": f"V-{driver}", "lat": lat, "lng": 116.4, "at_ms": at, "speed_kmh": 31.26}


def test_positions_keep_the_newest_fix_per_driver_and_never_go_back() -> None:
    vans = Positions()
    for p in (ping("D1", 10, 39.1), ping("D1", 30, 39.3), ping("D1", 20, 39.2), ping("D2", 5)):
        vans.offer(p)
    moved = vans.drain()
    assert {d: p["lat"] for d, p in moved.items()} == {"D1": 39.3, "D2": 39.9}
    assert moved["D1"] == {"driverId": "D1", "vehicleId": "V-D1", "lat": 39.3, "lng": 116.4, "atMs": 30,
                           "speedKmh": 31.3}
    vans.offer(ping("D1", 25))  # older than what was sent: a late ping never moves the van back
    vans.offer(ping("D1", 30))  # the same fix again (a duplicate)
    assert vans.drain() == {}
    vans.offer(ping("D1", 31, 39.4))
    assert list(vans.drain()) == ["D1"]


def test_positions_reach_the_map_the_driver_and_the_orders_on_board_but_not_warehouse_staff() -> None:
    import orjson

    hub = Hub()
    ops = Client(who("operator"), [Interest("fleet")])
    driver = Client(who("driver", "D1"), [Interest("driver", "D1")])
    merchant = Client(who("merchant", "C1"), [Interest("order", "O1")])
    other = Client(who("merchant", "C2"), [Interest("order", "O2")])
    staff = Client(who("warehouse_staff", "W1"), [Interest("order", "O1")])
    for c in (ops, driver, merchant, other, staff):
        hub.add(c)
    vans = Positions()
    vans.offer(ping("D1", 10))
    vans.offer(ping("D2", 11))
    hub.publish_positions(vans.drain(), {"O1": "D1", "O2": None}.get)
    fleet_frame = orjson.loads(ops.queue.get_nowait())
    assert fleet_frame["type"] == "positions" and {p["driverId"] for p in fleet_frame["positions"]} == {"D1", "D2"}
    for client in (driver, merchant):
        assert [p["driverId"] for p in orjson.loads(client.queue.get_nowait())["positions"]] == ["D1"]
    assert other.queue.empty() and staff.queue.empty()
    hub.publish_positions({}, {}.get)  # nothing moved: nothing sent
    assert all(c.queue.empty() for c in (ops, driver, merchant))
