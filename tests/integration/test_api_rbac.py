"""The RBAC table against the real service: every role x every read (REST endpoint and GraphQL query) x own /
other tenant, allowed or denied, in ONE table; and warehouse staff never get contact data. Real HTTP,
the real worker projecting two tenants' orders in a private slice of the stack; every REST answer is
checked against the OpenAPI document (``api_harness.ApiClient``).

"own" is tenant A's data (order A of customer A, from warehouse A, carried by driver A), "other" is tenant
B's; a token of a scoped role carries tenant A's claim. Operators and customer service have no tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.settings import Settings
from service.policy import ROLES
from tests.integration.api_harness import ApiClient, Slice, Tenant, seed_two_tenants, serve

pytestmark = pytest.mark.integration
PORT = 28004

READS = ("order", "orders", "order_alerts", "track", "alerts", "driver_position")
Y, N = True, False
# role -> read -> (own tenant, other tenant): allowed?
TABLE: dict[str, dict[str, tuple[bool, bool]]] = {
    "operator":         {r: (Y, Y) for r in READS},
    "customer_service": {r: (Y, Y) for r in READS},
    "merchant":         {"order": (Y, N), "orders": (Y, N), "order_alerts": (Y, N), "track": (Y, N),
                         "alerts": (N, N), "driver_position": (Y, N)},
    "customer":         {"order": (Y, N), "orders": (Y, N), "order_alerts": (Y, N), "track": (Y, N),
                         "alerts": (N, N), "driver_position": (Y, N)},
    "driver":           {"order": (Y, N), "orders": (Y, N), "order_alerts": (Y, N), "track": (Y, N),
                         "alerts": (N, N), "driver_position": (Y, N)},
    "warehouse_staff":  {"order": (Y, N), "orders": (Y, N), "order_alerts": (Y, N), "track": (N, N),
                         "alerts": (N, N), "driver_position": (N, N)},
}
# the list filter each role uses (operators and customer service: by customer)
LIST_BY = {"operator": "customer", "customer_service": "customer", "merchant": "customer", "customer": "customer",
           "driver": "driver", "warehouse_staff": "warehouse"}


@dataclass
class World:
    http: ApiClient
    a: Tenant
    b: Tenant


@pytest.fixture(scope="module")
def world(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("rbac")
    sl = Slice(stack, "rbac")
    worker = sl.worker("orders,telemetry,geofences,alerts,fleet", logs)
    server = None
    try:
        server = serve(PORT, sl.env, logs)
        a, b = seed_two_tenants(sl, "rbac")
        yield World(ApiClient(PORT), a, b)
    finally:
        if server is not None:
            server.stop()
        worker.stop()
        sl.close()


def _filter(role: str, t: Tenant) -> tuple[str, str]:
    by = LIST_BY[role]
    return by, {"customer": t.customer, "driver": t.driver, "warehouse": t.warehouse}[by]


def rest(role: str, read: str, t: Tenant) -> tuple[str, Callable[[Any], bool]]:
    """The REST path of ``read`` on tenant ``t``'s data and what an allowed answer must hold."""
    by, value = _filter(role, t)
    return {
        "order": (f"/orders/{t.order_id}", lambda body: body["orderId"] == t.order_id),
        "orders": (f"/orders?{by}={value}", lambda body: [o["orderId"] for o in body["orders"]] == [t.order_id]),
        "order_alerts": (f"/orders/{t.order_id}/alerts", lambda body: body["alerts"][0]["order_id"] == t.order_id),
        "track": (f"/orders/{t.order_id}/track?limit=5", lambda body: len(body["points"]) == 5),
        "alerts": ("/alerts", lambda body: isinstance(body["alerts"], list)),
        "driver_position": (f"/drivers/{t.driver}/position", lambda body: body["load"]["orders_on_board"] == 1),
    }[read]


def graphql(role: str, read: str, t: Tenant) -> tuple[str, Callable[[Any], bool]]:
    """The GraphQL query of ``read`` on tenant ``t``'s data and what allowed data must hold."""
    by, value = _filter(role, t)
    oid = t.order_id
    return {
        "order": (f'{{ order(id: "{oid}") {{ orderId }} }}', lambda d: d["order"]["orderId"] == oid),
        "orders": (f'{{ orders({by}: "{value}") {{ orders {{ orderId }} }} }}',
                   lambda d: [o["orderId"] for o in d["orders"]["orders"]] == [oid]),
        "order_alerts": (f'{{ order(id: "{oid}") {{ alerts {{ orderId }} }} }}',
                         lambda d: d["order"]["alerts"][0]["orderId"] == oid),
        "track": (f'{{ order(id: "{oid}") {{ track(limit: 5) {{ points {{ at }} }} }} }}',
                  lambda d: len(d["order"]["track"]["points"]) == 5),
        "alerts": ("{ alerts { alertId } }", lambda d: isinstance(d["alerts"], list)),
        "driver_position": (f'{{ order(id: "{oid}") {{ driver {{ position {{ lat }} load {{ loadKg }} }} }} }}',
                            lambda d: d["order"]["driver"]["position"]["lat"] > 0),
    }[read]


CASES = [(role, read, side) for role in ROLES for read in READS for side in ("own", "other")]


def test_the_table_covers_every_role_and_read() -> None:
    assert set(TABLE) == set(ROLES) and all(set(reads) == set(READS) for reads in TABLE.values())


@pytest.mark.parametrize(("role", "read", "side"), CASES, ids=["-".join(c) for c in CASES])
def test_rest(world: World, role: str, read: str, side: str) -> None:
    allowed = TABLE[role][read][side == "other"]
    target = world.a if side == "own" else world.b
    path, holds = rest(role, read, target)
    status, body = world.http.get(path, world.http.token(role, world.a.claim(role)))
    if allowed:
        assert status == 200 and holds(body), (path, status, body)
    else:
        assert status == 403 and body["detail"], (path, status, body)


@pytest.mark.parametrize(("role", "read", "side"), CASES, ids=["-".join(c) for c in CASES])
def test_graphql(world: World, role: str, read: str, side: str) -> None:
    allowed = TABLE[role][read][side == "other"]
    target = world.a if side == "own" else world.b
    query, holds = graphql(role, read, target)
    status, body = world.http.graphql(query, world.http.token(role, world.a.claim(role)))
    assert status == 200, body
    if allowed:
        assert "errors" not in body and holds(body["data"]), (query, body)
    else:
        codes = {e["extensions"]["code"] for e in body.get("errors") or []}
        assert codes == {"FORBIDDEN"} and all(e["message"] for e in body["errors"]), (query, body)


def test_warehouse_staff_never_get_contact_data(world: World) -> None:
    a = world.a
    staff = world.http.token("warehouse_staff", a.warehouse)
    for path in (f"/orders/{a.order_id}", f"/orders?warehouse={a.warehouse}"):
        status, body = world.http.get(path, staff)
        order = body if "orderId" in body else body["orders"][0]
        assert status == 200 and order["driverInfo"]["driverId"] == a.driver
        assert order["driverInfo"]["phone"] is None and order["driverInfo"]["location"] is None
        assert order["destination"] is None
    status, alerts = world.http.get(f"/orders/{a.order_id}/alerts", staff)
    assert status == 200 and all(al["location"] is None for al in alerts["alerts"])
    q = f'{{ order(id: "{a.order_id}") {{ destination {{ lat }} driver {{ info {{ phone location {{ lat }} }} }} }} }}'
    status, body = world.http.graphql(q, staff)
    assert body["data"]["order"] == {"destination": None, "driver": {"info": {"phone": None, "location": None}}}
    # the same reads as customer service: the contact data is there
    cs = world.http.token("customer_service")
    status, full = world.http.get(f"/orders/{a.order_id}", cs)
    assert full["driverInfo"]["phone"] and full["destination"] and full["driverInfo"]["location"]
    assert world.http.graphql(q, cs)[1]["data"]["order"]["driver"]["info"]["phone"]


def test_a_merchant_sees_the_load_but_not_other_customers_orders_on_the_van(world: World) -> None:
    a = world.a
    status, body = world.http.get(f"/drivers/{a.driver}/position", world.http.token("merchant", a.customer))
    assert status == 200 and body["load"]["order_ids"] == [a.order_id] and body["load"]["load_kg"] > 0
    assert body["load"]["orders_on_board"] == 1 and body["driver_id"] == a.driver
