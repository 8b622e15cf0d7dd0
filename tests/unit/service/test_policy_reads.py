"""The policy's rules for the reads added with GraphQL: order lists by warehouse, GPS tracks, driver loads,
alert locations (every role, own and other tenant)."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import Principal
from service.policy import ROLES, list_scope, may_read_track, redact_alert, visible_load

ORDER: dict[str, Any] = {"orderId": "KL1", "customerId": "CUST-1", "warehouseId": "WH-1",
                         "driverInfo": {"driverId": "DRV-1", "phone": "138"}}
OWN = {"operator": None, "customer_service": None, "merchant": "CUST-1", "customer": "CUST-1", "driver": "DRV-1",
       "warehouse_staff": "WH-1"}
OTHER = {"merchant": "CUST-2", "customer": "CUST-2", "driver": "DRV-2", "warehouse_staff": "WH-2"}

# role -> (list warehouse WH-1 with own claim, list warehouse WH-1 with another tenant's claim, track of own order)
TABLE = {
    "operator": (True, True, True),
    "customer_service": (True, True, True),
    "merchant": (False, False, True),
    "customer": (False, False, True),
    "driver": (False, False, True),
    "warehouse_staff": (True, False, False),
}


def who(role: str, tenant: str | None) -> Principal:
    return Principal(f"u-{role}", role, tenant)


def test_the_table_covers_every_role() -> None:
    assert set(TABLE) == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_listing_by_warehouse(role: str) -> None:
    own, other, _ = TABLE[role]
    scope, access = list_scope(who(role, OWN[role]), None, None, None, "WH-1")
    assert access.allowed is own, access.reason
    if own:
        assert scope["warehouse"] == "WH-1"
    if role in OTHER:
        denied = list_scope(who(role, OTHER[role]), None, None, None, "WH-1")[1]
        assert denied.allowed is other and OTHER[role] in denied.reason


def test_warehouse_staff_are_pinned_to_their_warehouse_with_or_without_a_status() -> None:
    staff = who("warehouse_staff", "WH-1")
    scope, access = list_scope(staff, None, None, None)
    assert access.allowed and scope == {"status": None, "customer": None, "driver": None, "warehouse": "WH-1"}
    scope, access = list_scope(staff, "PICKING", None, None)
    assert access.allowed and (scope["status"], scope["warehouse"]) == ("PICKING", "WH-1")
    assert not list_scope(staff, None, None, "DRV-1", "WH-1")[1].allowed


def test_scoped_roles_lists_never_carry_a_warehouse() -> None:
    for role in ("merchant", "customer", "driver"):
        scope, access = list_scope(who(role, OWN[role]), "PAID", None, None)
        assert access.allowed and scope["warehouse"] is None


@pytest.mark.parametrize("role", ROLES)
def test_tracks(role: str) -> None:
    _, _, own = TABLE[role]
    access = may_read_track(who(role, OWN[role]), ORDER)
    assert access.allowed is own
    if role == "warehouse_staff":
        assert "no GPS track" in access.reason
    if role in OTHER:
        assert not may_read_track(who(role, OTHER[role]), ORDER).allowed


def test_a_load_shows_the_order_ids_only_to_whom_they_belong() -> None:
    load = {"driver_id": "DRV-1", "vehicle_id": "VAN-1", "at": 1, "load_kg": 80.0, "order_ids": ["KL1", "KL2"],
            "stop_order": ["KL2", "KL1"]}
    for role in ("operator", "customer_service", "driver"):
        assert visible_load(who(role, OWN[role]), load) == load  # the driver sees the whole suggested route
    for role in ("merchant", "customer"):
        seen = visible_load(who(role, "CUST-1"), load, frozenset({"KL2", "KL7"}))
        assert seen["order_ids"] == ["KL2"] and seen["stop_order"] == ["KL2"] and seen["load_kg"] == 80.0
        other = visible_load(who(role, "CUST-2"), load)
        assert other["order_ids"] == [] and other["stop_order"] == []


def test_warehouse_staff_get_no_alert_location() -> None:
    alert = {"alert_id": "A1", "location": {"lat": 39.9, "lng": 116.4}}
    assert redact_alert(who("warehouse_staff", "WH-1"), alert)["location"] is None
    for role in ("operator", "customer_service", "merchant", "customer", "driver"):
        assert redact_alert(who(role, OWN[role]), alert) == alert
