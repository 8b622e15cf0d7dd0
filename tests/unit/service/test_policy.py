"""The authorisation policy as a table: every role x every read x own / other tenant."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import Principal
from service.policy import ROLES, list_scope, may_list_all_alerts, may_read_driver, order_access, redact

ORDER: dict[str, Any] = {"orderId": "KL1", "customerId": "CUST-1", "warehouseId": "WH-1",
                         "driverInfo": {"driverId": "DRV-1", "phone": "138", "location": {"lat": 1.0}},
                         "signature": {"receiverName": "王经理"}, "destination": {"lat": 39.9, "lng": 116.4}}
OWN = {"operator": None, "customer_service": None, "merchant": "CUST-1", "customer": "CUST-1", "driver": "DRV-1",
       "warehouse_staff": "WH-1"}
OTHER = {"merchant": "CUST-2", "customer": "CUST-2", "driver": "DRV-2", "warehouse_staff": "WH-2"}

# role -> (own order, other tenant's order, list all alerts, driver DRV-1's position as owner/of own orders)
TABLE = {
    "operator": (True, True, True, True),
    "customer_service": (True, True, True, True),
    "merchant": (True, False, False, True),
    "customer": (True, False, False, True),
    "driver": (True, False, False, True),
    "warehouse_staff": (True, False, False, False),
}


def who(role: str, tenant: str | None) -> Principal:
    return Principal(f"u-{role}", role, tenant)


def test_the_table_covers_every_role() -> None:
    assert set(TABLE) == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_order_reads(role: str) -> None:
    own, other, all_alerts, position = TABLE[role]
    assert order_access(who(role, OWN[role]), ORDER).allowed is own
    if role in OTHER:
        denied = order_access(who(role, OTHER[role]), ORDER)
        assert denied.allowed is other and "KL1" in denied.reason and OTHER[role] in denied.reason
    assert may_list_all_alerts(who(role, OWN[role])).allowed is all_alerts
    assert may_read_driver(who(role, OWN[role]), "DRV-1", frozenset({"DRV-1"})).allowed is position
    if role in OTHER:
        assert not may_read_driver(who(role, OTHER[role]), "DRV-1", frozenset()).allowed


@pytest.mark.parametrize("role", ROLES)
def test_order_lists_are_pinned_to_the_tenant_and_other_tenants_are_denied(role: str) -> None:
    me = who(role, OWN[role])
    if role in ("operator", "customer_service"):
        scope, access = list_scope(me, None, "CUST-9", None)
        assert access.allowed and scope["customer"] == "CUST-9"
        return
    if role == "warehouse_staff":
        scope, access = list_scope(me, "PAID", None, None)
        assert access.allowed and scope["warehouse"] == "WH-1"
        assert not list_scope(me, None, "CUST-1", None)[1].allowed
        return
    scope, access = list_scope(me, None, None, None)
    assert access.allowed
    assert (scope["customer"], scope["driver"]) == (("CUST-1", None) if role != "driver" else (None, "DRV-1"))
    other = {"customer": "CUST-2"} if role != "driver" else {"driver": "DRV-2"}
    assert not list_scope(me, None, other.get("customer"), other.get("driver"))[1].allowed


def test_warehouse_staff_never_see_contact_data() -> None:
    seen = redact(who("warehouse_staff", "WH-1"), ORDER)
    assert seen["driverInfo"]["phone"] is None and seen["signature"]["receiverName"] is None
    assert seen["destination"] is None and seen["driverInfo"]["driverId"] == "DRV-1"
    for role in ("operator", "customer_service", "merchant", "customer", "driver"):
        assert redact(who(role, OWN[role]), ORDER) == ORDER


# role -> may manage webhook subscriptions (own tenant and another's alike: subscriptions have no tenant)
SUBSCRIPTIONS_TABLE = {"operator": True, "customer_service": False, "merchant": False, "customer": False,
                       "driver": False, "warehouse_staff": False}


@pytest.mark.parametrize("role", ROLES)
def test_only_operators_manage_webhook_subscriptions(role: str) -> None:
    from service.policy import may_manage_subscriptions

    assert set(SUBSCRIPTIONS_TABLE) == set(ROLES)
    for tenant in {OWN[role], OTHER.get(role)}:
        access = may_manage_subscriptions(who(role, tenant))
        assert access.allowed is SUBSCRIPTIONS_TABLE[role]
        assert access.allowed or (role in access.reason and "operators only" in access.reason)


# role -> (funnel / fleet / order map / pipeline, warehouses, own KPIs (its dimension, its id), KPIs of the city,
#          acknowledge an alert, stock of WH-1, stock warnings of customer CUST-1)
DASHBOARD_TABLE = {
    "operator": (True, True, True, True, True, True, True),
    "customer_service": (True, True, True, True, True, True, True),
    "merchant": (False, True, True, False, False, False, True),
    "customer": (False, True, True, False, False, False, True),
    "driver": (False, True, True, False, False, False, False),
    "warehouse_staff": (False, True, True, False, False, True, False),
}
KPI_DIMENSION = {"operator": "warehouse", "customer_service": "driver", "merchant": "merchant", "customer": "merchant",
                 "driver": "driver", "warehouse_staff": "warehouse"}


@pytest.mark.parametrize("role", ROLES)
def test_the_dashboard_reads(role: str) -> None:
    from service.policy import (
        kpi_scope,
        may_acknowledge_alert,
        may_read_customer_stock,
        may_read_stock,
        may_read_warehouses,
        may_watch_operations,
    )

    assert set(DASHBOARD_TABLE) == set(ROLES)
    ops, warehouses, own_kpis, city_kpis, ack, stock, customer_stock = DASHBOARD_TABLE[role]
    me = who(role, OWN[role])
    watch = may_watch_operations(me, "the fleet")
    assert watch.allowed is ops and (ops or ("the fleet" in watch.reason and role in watch.reason))
    assert may_read_warehouses(me).allowed is warehouses
    own_id = OWN[role] or "X-9"
    kpi_id, access = kpi_scope(me, KPI_DIMENSION[role], own_id)
    assert access.allowed is own_kpis and kpi_id == own_id
    if role not in ("operator", "customer_service"):
        assert kpi_scope(me, KPI_DIMENSION[role], None) == (OWN[role], access)  # the id defaults to the tenant
        other = kpi_scope(me, KPI_DIMENSION[role], OTHER[role])[1]
        assert not other.allowed and OTHER[role] in other.reason
        wrong = "city" if role != "driver" else "merchant"
        assert not kpi_scope(me, wrong, OWN[role])[1].allowed  # another dimension, even with their own id
    assert kpi_scope(me, "city", None)[1].allowed is city_kpis
    assert not kpi_scope(me, "planet", None)[1].allowed
    acked = may_acknowledge_alert(me, "late-delivery/order/KL1")
    assert acked.allowed is ack and (ack or "late-delivery/order/KL1" in acked.reason)
    assert may_read_stock(me, "WH-1").allowed is stock
    assert may_read_customer_stock(me, "CUST-1").allowed is customer_stock
    if role in OTHER:
        other_me = who(role, OTHER[role])
        assert not may_read_stock(other_me, "WH-1").allowed and not may_read_customer_stock(other_me, "CUST-1").allowed
