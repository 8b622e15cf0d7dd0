"""Who may see what: the one authorisation policy of the service. Pure, tested as a table.

Roles (seed: multi-role permissions) and their scope:

| role | orders | contact data | alerts | driver positions |
|---|---|---|---|---|
| ``operator`` | all | yes | all | all |
| ``customer_service`` | all | yes | all | all |
| ``merchant``, ``customer`` | their customer id's | yes | their orders' | their orders' drivers |
| ``driver`` | assigned to them now | yes (to deliver) | their orders' | their own |
| ``warehouse_staff`` | picked in their warehouse | **no** (removed) | their orders' | none |

Every read goes through ``order_access`` (one order), ``list_scope`` (order lists) or the
``may_*`` functions; a denial says why. Cross-tenant reads are denied, never filtered silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ROLES = ("operator", "customer_service", "merchant", "customer", "driver", "warehouse_staff")
TENANT_CLAIM = {"merchant": "customer_id", "customer": "customer_id", "driver": "driver_id",
                "warehouse_staff": "warehouse_id"}
EVERYTHING = frozenset({"operator", "customer_service"})


class Caller(Protocol):
    role: str
    tenant: str | None


@dataclass(frozen=True, slots=True)
class Access:
    allowed: bool
    reason: str


ALLOW = Access(True, "")


def _owner(role: str, order: Mapping[str, Any]) -> str | None:
    """The tenant of ``order`` for a scoped role (public view, camelCase)."""
    if role in ("merchant", "customer"):
        return order.get("customerId")
    if role == "driver":
        return (order.get("driverInfo") or {}).get("driverId")
    if role == "warehouse_staff":
        return order.get("warehouseId")
    return None


def order_access(caller: Caller, order: Mapping[str, Any]) -> Access:
    """May ``caller`` read this order (its public view)?"""
    if caller.role in EVERYTHING:
        return ALLOW
    if caller.role not in TENANT_CLAIM:
        return Access(False, f"unknown role {caller.role}")
    if _owner(caller.role, order) == caller.tenant:
        return ALLOW
    return Access(False, f"order {order.get('orderId')} is not one of this {caller.role}'s "
                         f"({TENANT_CLAIM[caller.role]} {caller.tenant})")


def redact(caller: Caller, order: dict[str, Any]) -> dict[str, Any]:
    """The view as ``caller`` may see it: warehouse staff never see contact data (the driver's phone, the
    receiver's name, the delivery address)."""
    if caller.role != "warehouse_staff":
        return order
    out = dict(order)
    if out.get("driverInfo"):
        out["driverInfo"] = {**out["driverInfo"], "phone": None, "location": None}
    if out.get("signature"):
        out["signature"] = {**out["signature"], "receiverName": None}
    out["destination"] = None
    return out


def list_scope(caller: Caller, status: str | None, customer: str | None, driver: str | None
               ) -> tuple[dict[str, str | None], Access]:
    """The index an order list may use for ``caller`` (a scoped role is pinned to its tenant; asking
    for another tenant is a denial, not an empty list)."""
    asked = {"status": status, "customer": customer, "driver": driver}
    if caller.role in EVERYTHING:
        return asked, ALLOW
    if caller.role in ("merchant", "customer"):
        if customer not in (None, caller.tenant) or driver is not None:
            return asked, Access(False, f"a {caller.role} lists only customer {caller.tenant}'s orders")
        return {"status": status, "customer": caller.tenant, "driver": None}, ALLOW
    if caller.role == "driver":
        if driver not in (None, caller.tenant) or customer is not None:
            return asked, Access(False, f"a driver lists only their own orders ({caller.tenant})")
        return {"status": status, "customer": None, "driver": caller.tenant}, ALLOW
    if caller.role == "warehouse_staff":
        if customer is not None or driver is not None or status is None:
            return asked, Access(False, "warehouse staff list orders by status (of their warehouse only)")
        return {"status": status, "customer": None, "driver": None, "warehouse": caller.tenant}, ALLOW
    return asked, Access(False, f"unknown role {caller.role}")


def may_list_all_alerts(caller: Caller) -> Access:
    if caller.role in EVERYTHING:
        return ALLOW
    return Access(False, f"a {caller.role} reads the alerts of their own orders (GET /orders/{{id}}/alerts)")


def may_read_driver(caller: Caller, driver_id: str, drivers_of_own_orders: frozenset[str] = frozenset()) -> Access:
    """A driver's live position: operators and customer service, the driver, and a merchant/customer whose
    order that driver is carrying."""
    if caller.role in EVERYTHING or (caller.role == "driver" and caller.tenant == driver_id):
        return ALLOW
    if caller.role in ("merchant", "customer") and driver_id in drivers_of_own_orders:
        return ALLOW
    return Access(False, f"a {caller.role} may not see driver {driver_id}'s position")


# commands through the API -> the command side (the order aggregate decides; this only says who may ask)
COMMANDS_BY_ROLE = {
    "operator": frozenset({"deliver", "report_exception"}),
    "driver": frozenset({"deliver", "report_exception"}),  # on the orders assigned to them
    "merchant": frozenset({"deliver"}),  # the customer confirms receipt (signature reference)
    "customer": frozenset({"deliver"}),
}


def command_access(caller: Caller, command: str, order: Mapping[str, Any]) -> Access:
    """May ``caller`` send ``command`` for this order (its public view)? The aggregate still decides whether
    the order's state allows it (409)."""
    if command not in COMMANDS_BY_ROLE.get(caller.role, frozenset()):
        return Access(False, f"a {caller.role} may not {command.replace('_', ' ')}")
    return order_access(caller, order)
