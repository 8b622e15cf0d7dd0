"""Who may see what: the one authorisation policy of the service. Pure, tested as a table.

Roles (seed: multi-role permissions) and their scope:

| role | orders | contact data | alerts | driver positions, loads | GPS tracks |
|---|---|---|---|---|---|
| ``operator`` | all | yes | all | all | all |
| ``customer_service`` | all | yes | all | all | all |
| ``merchant``, ``customer`` | their customer id's | yes | their orders' | their orders' drivers | their orders' |
| ``driver`` | assigned to them now | yes (to deliver) | their orders' | their own | their orders' |
| ``warehouse_staff`` | picked in their warehouse | **no** (removed) | their orders' (no location) | none | none |

Every read goes through ``order_access`` (one order), ``list_scope`` (order lists) or the
``may_*`` functions; a denial says why. Cross-tenant reads are denied, never filtered silently.
REST (``service.app``) and GraphQL (``service.graphql_api``) both read through ``service.reads``,
which asks these functions: there is no second policy. The dashboard's reads (``service.dashboard_routes``)
ask the functions at the end: city-wide views and alert acknowledgements for operators and customer service,
the warehouses for everyone, KPIs, stock and stock warnings of one's own tenant.
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


def list_scope(caller: Caller, status: str | None, customer: str | None, driver: str | None,
               warehouse: str | None = None) -> tuple[dict[str, str | None], Access]:
    """The indexes an order list may use for ``caller`` (a scoped role is pinned to its tenant; asking
    for another tenant is a denial, not an empty list). Listing by warehouse: operators and customer
    service any, warehouse staff their own, nobody else."""
    asked = {"status": status, "customer": customer, "driver": driver, "warehouse": warehouse}
    if caller.role in EVERYTHING:
        return asked, ALLOW
    if caller.role in ("merchant", "customer"):
        if customer not in (None, caller.tenant) or driver is not None or warehouse is not None:
            return asked, Access(False, f"a {caller.role} lists only customer {caller.tenant}'s orders")
        return {"status": status, "customer": caller.tenant, "driver": None, "warehouse": None}, ALLOW
    if caller.role == "driver":
        if driver not in (None, caller.tenant) or customer is not None or warehouse is not None:
            return asked, Access(False, f"a driver lists only their own orders ({caller.tenant})")
        return {"status": status, "customer": None, "driver": caller.tenant, "warehouse": None}, ALLOW
    if caller.role == "warehouse_staff":
        if customer is not None or driver is not None or warehouse not in (None, caller.tenant):
            return asked, Access(False, f"warehouse staff list only warehouse {caller.tenant}'s orders "
                                        "(by status, or all of them)")
        return {"status": status, "customer": None, "driver": None, "warehouse": caller.tenant}, ALLOW
    return asked, Access(False, f"unknown role {caller.role}")


def may_list_all_alerts(caller: Caller) -> Access:
    if caller.role in EVERYTHING:
        return ALLOW
    return Access(False, f"a {caller.role} reads the alerts of their own orders (GET /orders/{{id}}/alerts)")


def may_read_driver(caller: Caller, driver_id: str, drivers_of_own_orders: frozenset[str] = frozenset()) -> Access:
    """A driver's live position and load: operators and customer service, the driver, and a merchant/customer
    whose order that driver is carrying."""
    if caller.role in EVERYTHING or (caller.role == "driver" and caller.tenant == driver_id):
        return ALLOW
    if caller.role in ("merchant", "customer") and driver_id in drivers_of_own_orders:
        return ALLOW
    return Access(False, f"a {caller.role} may not see driver {driver_id}'s position")


def visible_load(caller: Caller, load: dict[str, Any], own_orders: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A driver's load (``projections.fleet.driver_load``) as ``caller`` may see it: the weight and the count
    for whoever may read the driver; the ids of the orders on board only for operators, customer service
    and the driver; a merchant/customer sees their own among them (``own_orders``), never another's."""
    if caller.role in EVERYTHING or caller.role == "driver":
        return load
    return {**load, "order_ids": [o for o in load["order_ids"] if o in own_orders],
            "stop_order": [o for o in load.get("stop_order") or () if o in own_orders]}


def may_read_track(caller: Caller, order: Mapping[str, Any]) -> Access:
    """An order's GPS track: whoever may read the order, except warehouse staff (drivers' location data)."""
    if caller.role == "warehouse_staff":
        return Access(False, f"warehouse staff get no GPS track (order {order.get('orderId')}: drivers' "
                             "location data)")
    return order_access(caller, order)


def redact_alert(caller: Caller, alert: dict[str, Any]) -> dict[str, Any]:
    """An alert as ``caller`` may see it: warehouse staff get no location (where the van was)."""
    if caller.role != "warehouse_staff" or alert.get("location") is None:
        return alert
    return {**alert, "location": None}


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


# the live feed (WebSocket): who may subscribe to what, and which changes reach them
_INTEREST_OF_ROLE = {"merchant": "customer", "customer": "customer", "driver": "driver",
                     "warehouse_staff": "warehouse"}


def subscription_access(caller: Caller, kind: str, key: str | None) -> Access:
    """May ``caller`` subscribe to ``kind`` (customer / driver / warehouse / alerts; one order is checked with
    ``order_access`` on the order itself)? A scoped role subscribes to its own tenant only."""
    if caller.role in EVERYTHING:
        return ALLOW
    if kind == "alerts":
        return may_list_all_alerts(caller)
    if kind == "fleet":
        return Access(False, f"a {caller.role} may not follow every van (operators and customer service)")
    if _INTEREST_OF_ROLE.get(caller.role) == kind and key == caller.tenant:
        return ALLOW
    return Access(False, f"a {caller.role} ({TENANT_CLAIM.get(caller.role, 'tenant')} {caller.tenant}) "
                         f"may not follow {kind} {key}")


def change_visible(caller: Caller, customer_id: str | None, driver_id: str | None,
                   warehouse_id: str | None) -> bool:
    """Does one change (an order's new state, an alert, a tracking record) belong to ``caller``? Checked on
    every change sent, so an order reassigned to another driver stops reaching the first one."""
    if caller.role in EVERYTHING:
        return True
    owner = {"merchant": customer_id, "customer": customer_id, "driver": driver_id,
             "warehouse_staff": warehouse_id}.get(caller.role)
    return owner is not None and owner == caller.tenant


def positions_visible(caller: Caller) -> bool:
    """Does a client following an order or a driver get that driver's live position (``positions`` frames)?
    Whoever may read the driver's position over REST (``may_read_driver``): not warehouse staff."""
    return caller.role != "warehouse_staff"


def may_manage_subscriptions(caller: Caller) -> Access:
    """Webhook subscriptions (create, list, pause, resume, delete, rotate, their deliveries): operators only."""
    if caller.role == "operator":
        return ALLOW
    return Access(False, f"a {caller.role} may not manage webhook subscriptions (operators only)")


def may_erase(caller: Caller, customer_id: str) -> Access:
    """Who may have a customer's personal data erased (crypto-shredding): operators and customer service on a
    request, and the customer (merchant) themselves."""
    if caller.role in EVERYTHING:
        return ALLOW
    if caller.role in ("merchant", "customer") and caller.tenant == customer_id:
        return ALLOW
    return Access(False, f"a {caller.role} may not erase customer {customer_id}'s personal data")


# the operations dashboard (docs/api.md "Dashboard endpoints")
def may_watch_operations(caller: Caller, what: str) -> Access:
    """The city-wide views of the dashboard (``what``: the funnel, the fleet, the order map, the pipeline's health):
    operators and customer service only."""
    if caller.role in EVERYTHING:
        return ALLOW
    return Access(False, f"a {caller.role} may not see {what} (operators and customer service only)")


def may_read_warehouses(caller: Caller) -> Access:
    """The warehouses and depots of the fence file (no personal data): every known role."""
    if caller.role in ROLES:
        return ALLOW
    return Access(False, f"unknown role {caller.role}")


KPI_DIMENSIONS = ("city", "warehouse", "merchant", "driver")
_KPI_DIMENSION_OF_ROLE = {"merchant": "merchant", "customer": "merchant", "driver": "driver",
                          "warehouse_staff": "warehouse"}


def kpi_scope(caller: Caller, dimension: str, dimension_id: str | None) -> tuple[str | None, Access]:
    """The KPI window id ``caller`` may read for ``dimension`` (docs/kpis.md): operators and customer service
    any; a merchant (customer) their own customer id's ``merchant`` figures, warehouse staff their warehouse's,
    a driver their own (the id defaults to the caller's tenant); anything else is a denial."""
    if dimension not in KPI_DIMENSIONS:
        return dimension_id, Access(False, f"unknown KPI dimension {dimension!r}; known: {', '.join(KPI_DIMENSIONS)}")
    if caller.role in EVERYTHING:
        return dimension_id, ALLOW
    own = _KPI_DIMENSION_OF_ROLE.get(caller.role)
    if own == dimension and dimension_id in (None, caller.tenant):
        return caller.tenant, ALLOW
    return dimension_id, Access(False, f"a {caller.role} ({TENANT_CLAIM.get(caller.role, 'tenant')} {caller.tenant}) "
                                       f"may not read the {dimension} KPIs of {dimension_id or 'that id'}")


def may_acknowledge_alert(caller: Caller, alert_id: str) -> Access:
    """Acknowledging an alert (it stays open; the acknowledgement says who handles it): operators and customer
    service."""
    if caller.role in EVERYTHING:
        return ALLOW
    return Access(False, f"a {caller.role} may not acknowledge alert {alert_id} (operators and customer service only)")


def may_read_stock(caller: Caller, warehouse_id: str) -> Access:
    """A warehouse's stock levels and replenishment suggestions: operators, customer service, and that
    warehouse's staff."""
    if caller.role in EVERYTHING or (caller.role == "warehouse_staff" and caller.tenant == warehouse_id):
        return ALLOW
    return Access(False, f"a {caller.role} ({TENANT_CLAIM.get(caller.role, 'tenant')} {caller.tenant}) may not see "
                         f"the stock of warehouse {warehouse_id}")


def may_read_customer_stock(caller: Caller, customer_id: str) -> Access:
    """The stock warnings of the SKUs a customer orders: operators, customer service, and that customer (merchant)."""
    if caller.role in EVERYTHING or (caller.role in ("merchant", "customer") and caller.tenant == customer_id):
        return ALLOW
    return Access(False, f"a {caller.role} ({TENANT_CLAIM.get(caller.role, 'tenant')} {caller.tenant}) may not see "
                         f"customer {customer_id}'s stock warnings")
