"""GraphQL (``/graphql``) against the real service and the real stack: two customers' orders projected by the
real worker (orders, telemetry, geofences, alerts, fleet) in a private slice of topics, Redis prefix and
InfluxDB database; real HTTP. One query brings the order with its driver (info, position, load), lines,
alerts, track, ETA and stages; another tenant's order is denied with the policy's reason; too deep a query
is refused; no token is 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from config.settings import Settings
from tests.integration.api_harness import PINGS, ApiClient, Slice, Tenant, seed_two_tenants, serve

pytestmark = pytest.mark.integration
PORT = 28003

ONE_QUERY = """
query Order($id: String!) {
  order(id: $id) {
    orderId status eta etaSource warehouseId customerId
    stages { name at }
    lines { lineNo sku quantity picked measuredKg }
    driver {
      driverId
      info { name phone vehiclePlate location { lat lng at } }
      position { at lat lng speedKmh }
      load { loadKg ordersOnBoard orderIds at }
    }
    alerts { alertId ruleId severity status message openedAt }
    track(limit: 10) { driverId from to total thinned points { at lat lng } }
  }
}"""


@dataclass
class World:
    http: ApiClient
    a: Tenant
    b: Tenant


@pytest.fixture(scope="module")
def world(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("graphql")
    sl = Slice(stack, "gql")
    worker = sl.worker("orders,telemetry,geofences,alerts,fleet", logs)
    server = None
    try:
        server = serve(PORT, sl.env, logs)
        a, b = seed_two_tenants(sl, "gql")
        yield World(ApiClient(PORT), a, b)
    finally:
        if server is not None:
            server.stop()
        worker.stop()
        sl.close()


def test_one_query_brings_order_driver_lines_alerts_track_eta_and_stages(world: World) -> None:
    a = world.a
    status, body = world.http.graphql(ONE_QUERY, world.http.token("customer", a.customer), id=a.order_id)
    assert status == 200 and "errors" not in body, body
    order = body["data"]["order"]
    assert (order["orderId"], order["status"], order["customerId"]) == (a.order_id, "DELIVERING", a.customer)
    assert order["eta"] and order["stages"][-1]["name"] == "dispatched"
    assert {s["name"] for s in order["stages"]} >= {"created", "paid", "picking_started", "packed", "dispatched"}
    assert [ln["sku"] for ln in order["lines"]] == ["VEG-SPINACH-ORG", "MEAT-PORK-BELLY", "DAIRY-MILK-1L"]
    driver = order["driver"]
    assert driver["driverId"] == a.driver and driver["info"]["phone"] and driver["info"]["name"]
    assert driver["position"]["lat"] == pytest.approx(39.93) and driver["position"]["at"] > order["stages"][-1]["at"]
    load = driver["load"]
    assert load["loadKg"] > 0 and load["ordersOnBoard"] == 1 and load["orderIds"] == [a.order_id]
    assert [al["ruleId"] for al in order["alerts"]] == ["stock-shortage"] and order["alerts"][0]["status"] == "OPEN"
    track = order["track"]
    assert track["driverId"] == a.driver and track["total"] == PINGS and track["thinned"]
    assert len(track["points"]) == 10 and track["from"] == order["stages"][-1]["at"]
    times = [p["at"] for p in track["points"]]
    assert times == sorted(times) and times[-1] == driver["position"]["at"]  # the last ping is kept


def test_orders_are_cursor_paged_and_listed_by_warehouse(world: World) -> None:
    q = """query($wh: String, $after: String) { orders(warehouse: $wh, status: DELIVERING, first: 1, after: $after)
           { orders { orderId warehouseId } nextCursor } }"""
    op = world.http.token("operator")
    status, body = world.http.graphql(q, op, wh=world.a.warehouse)
    assert status == 200 and body["data"]["orders"] == {
        "orders": [{"orderId": world.a.order_id, "warehouseId": world.a.warehouse}], "nextCursor": None}
    q_all = """query($after: String) { orders(status: DELIVERING, first: 1, after: $after) {
               orders { orderId } nextCursor } }"""
    first = world.http.graphql(q_all, op)[1]["data"]["orders"]
    second = world.http.graphql(q_all, op, after=first["nextCursor"])[1]["data"]["orders"]
    assert [o["orderId"] for o in first["orders"] + second["orders"]] == [world.a.order_id, world.b.order_id]
    assert second["nextCursor"] is None


def test_another_tenants_order_is_denied_with_the_policys_reason(world: World) -> None:
    a, b = world.a, world.b
    status, body = world.http.graphql(ONE_QUERY, world.http.token("merchant", b.customer), id=a.order_id)
    assert status == 200 and body["data"] == {"order": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN" and error["path"] == ["order"]
    assert a.order_id in error["message"] and b.customer in error["message"]
    q = "query($c: String) { orders(customer: $c) { orders { orderId } } }"
    status, body = world.http.graphql(q, world.http.token("merchant", b.customer), c=a.customer)
    assert body["data"] == {"orders": None} and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = world.http.graphql("{ alerts { alertId } }", world.http.token("driver", a.driver))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and "their own orders" in body["errors"][0]["message"]


def test_a_query_deeper_than_the_limit_is_refused_before_it_runs(world: World) -> None:
    deep = "{ alerts { order { alerts { order { alerts { order { driver { driverId } } } } } } } }"
    status, body = world.http.graphql(deep, world.http.token("operator"))
    assert body.get("data") is None and "exceeds maximum operation depth" in body["errors"][0]["message"], body
    ok = "{ alerts { order { alerts { order { alerts { order { orderId } } } } } } }"
    status, body = world.http.graphql(ok, world.http.token("operator"))
    assert status == 200 and "errors" not in body and body["data"]["alerts"], body


def test_no_token_is_401_and_no_ide_is_served(world: World) -> None:
    status, body = world.http.graphql("{ alerts { alertId } }", None)
    assert status == 401 and "missing Authorization" in body["detail"]
    status, body = world.http.graphql("{ alerts { alertId } }", world.http.token("operator")[:-4] + "AAAA")
    assert status == 401 and "invalid token" in body["detail"]
    status, page = world.http.get("/graphql", world.http.token("operator"))  # no IDE page, no query by GET
    assert status >= 400 and "graphiql" not in str(page).lower() and "<script" not in str(page)
