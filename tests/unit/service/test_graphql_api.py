"""GraphQL over HTTP in process (FastAPI's test client, no network): the resolvers read through
``service.reads`` (the REST reads, the one policy), with the stores replaced by a seeded order."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from config.settings import load
from projections.order_state import fold_all
from projections.order_view import public_view
from service import reads as reads_mod
from service import track as track_mod
from service.auth import AuthError, Principal, issue, verify
from service.graphql_api import graphql_router
from service.reads import Reads
from simulator.events import T0, order_story

SECRET = "k" * 40
ORDER_ID = "KLG1"
POSITION = {"driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_id": "e1", "at": T0, "lat": 39.9, "lng": 116.4,
            "speed_kmh": 30.0, "heading_deg": 90.0}
LOAD = {"driver_id": "DRV-001", "vehicle_id": "VAN-001", "at": T0, "load_kg": 42.5, "order_ids": [ORDER_ID, "KLX"]}
ALERT = {"alert_id": f"shortage/order/{ORDER_ID}", "rule_id": "stock-shortage", "rule_version": 1,
         "severity": "WARNING", "status": "OPEN", "order_id": ORDER_ID, "driver_id": None, "vehicle_id": None,
         "warehouse_id": "WH-BJ-CY-01", "customer_id": "CUST-0001", "opened_at": T0, "updated_at": T0,
         "resolved_at": None, "occurrences": 1, "message": "short", "evidence": {"lines": "2"},
         "location": {"lat": 39.9, "lng": 116.4}, "audience": ["OPERATOR"]}
ONE_QUERY = """query($id: String!) { order(id: $id) { orderId status eta stages { name at } lines { sku picked }
  driver { driverId info { name phone } position { lat at } load { loadKg ordersOnBoard orderIds } }
  alerts { ruleId location { lat } } track(limit: 2) { total thinned points { at lat } } } }"""


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    events = order_story(ORDER_ID, T0)
    events = events[:[t for t, _ in events].index("OrderDispatched") + 1]
    doc = public_view(fold_all(events)[0][ORDER_ID]["view"])
    monkeypatch.setattr(reads_mod.order_store, "order", lambda s, c, oid: {**doc, "source": "redis"}
                        if oid == ORDER_ID else None)
    q = reads_mod.queries
    monkeypatch.setattr(q, "order_ids", lambda s, **by: {ORDER_ID} if set(by.values()) & {
        "CUST-0001", "DRV-001", "WH-BJ-CY-01"} else set())
    monkeypatch.setattr(q, "alert_listing", lambda s, **kw: [ALERT] if kw.get("order_id") == ORDER_ID else [])
    monkeypatch.setattr(q, "driver_position", lambda s, d: POSITION if d == "DRV-001" else None)
    monkeypatch.setattr(q, "driver_load", lambda s, d: LOAD if d == "DRV-001" else None)
    points = [{"time": T0 + i * 5000, "lat": 39.9 + i / 1000, "lng": 116.4, "speed_kmh": 30.0, "heading_deg": 1.0}
              for i in range(5)]
    monkeypatch.setattr(track_mod, "gps_points", lambda s, d, a, b, limit: (track_mod.thin(points, limit), 5))

    def caller(authorization: str | None = Header(None)) -> Principal:
        try:
            return verify(SECRET, authorization)
        except AuthError as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from exc

    app = FastAPI()
    app.include_router(graphql_router(Reads(load("test"), codec=None, clock_ms=lambda: T0 + 86_400_000), caller))
    return TestClient(app)


def ask(client: TestClient, role: str, tenant: str | None, query: str = ONE_QUERY) -> dict[str, Any]:
    token = issue(SECRET, f"u-{role}", role, tenant)
    resp = client.post("/graphql", json={"query": query, "variables": {"id": ORDER_ID}},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_one_query_brings_the_order_with_driver_lines_alerts_track_and_eta(client: TestClient) -> None:
    body = ask(client, "operator", None)
    assert "errors" not in body, body
    order = body["data"]["order"]
    assert order["orderId"] == ORDER_ID and order["status"] == "DELIVERING" and order["eta"]
    assert [s["name"] for s in order["stages"]][-1] == "dispatched" and len(order["lines"]) == 3
    driver = order["driver"]
    assert driver["info"]["phone"] and driver["position"]["lat"] == 39.9
    assert driver["load"] == {"loadKg": 42.5, "ordersOnBoard": 2, "orderIds": [ORDER_ID, "KLX"]}
    assert order["alerts"] == [{"ruleId": "stock-shortage", "location": {"lat": 39.9}}]
    assert order["track"]["total"] == 5 and order["track"]["thinned"] and len(order["track"]["points"]) == 2


def test_a_merchant_sees_only_their_own_order_ids_on_the_van(client: TestClient) -> None:
    body = ask(client, "merchant", "CUST-0001")
    assert "errors" not in body, body
    assert body["data"]["order"]["driver"]["load"]["orderIds"] == [ORDER_ID]


def test_another_tenant_is_denied_with_the_policys_reason(client: TestClient) -> None:
    body = ask(client, "merchant", "CUST-9")
    assert body["data"] == {"order": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN" and "CUST-9" in error["message"]
    assert error["path"] == ["order"]


def test_warehouse_staff_get_the_order_without_contact_data_position_or_track(client: TestClient) -> None:
    body = ask(client, "warehouse_staff", "WH-BJ-CY-01")
    order = body["data"]["order"]
    assert order["driver"]["info"]["phone"] is None and order["alerts"][0]["location"] is None
    assert order["driver"]["position"] is None and order["driver"]["load"] is None
    denied = {tuple(e["path"]): e["extensions"]["code"] for e in body["errors"]}
    assert denied == {("order", "driver", "position"): "FORBIDDEN", ("order", "driver", "load"): "FORBIDDEN",
                      ("order", "track"): "FORBIDDEN"}
    assert order["track"] is None and order["lines"]


def test_no_token_is_401_and_there_is_no_ide(client: TestClient) -> None:
    resp = client.post("/graphql", json={"query": "{ alerts { alertId } }"})
    assert resp.status_code == 401 and "missing Authorization" in resp.json()["detail"]
    token = issue(SECRET, "u-op", "operator")
    page = client.get("/graphql", headers={"Accept": "text/html", "Authorization": f"Bearer {token}"})
    assert page.status_code in (404, 405) and "graphiql" not in page.text.lower() and "cdn" not in page.text
    by_get = client.get("/graphql?query={alerts{alertId}}", headers={"Authorization": f"Bearer {token}"})
    assert by_get.status_code >= 400 and "alertId" not in by_get.text  # queries by POST only
