"""The subscription endpoints in process (FastAPI's test client, an in-memory store): operators only, the
secret shown once, 422 naming the field, 404/409. Over real HTTP with the real worker:
``tests/integration/test_webhooks.py``."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from config.settings import load
from service.auth import AuthError, Principal, issue, verify
from service.webhook_routes import webhook_router

SECRET = "k" * 40
BASE = "/webhooks/subscriptions"


@pytest.fixture
def client() -> TestClient:
    settings = load("test")
    settings = dataclasses.replace(settings, api_secret=SECRET,
                                   webhooks=dataclasses.replace(settings.webhooks, store_url="memory://"))

    def caller(authorization: Annotated[str | None, Header()] = None) -> Principal:
        try:
            return verify(SECRET, authorization)
        except AuthError as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from exc

    app = FastAPI()
    app.include_router(webhook_router(settings, caller))
    return TestClient(app)


def auth(role: str = "operator", tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue(SECRET, f"u-{role}", role, tenant)}


def test_create_shows_the_secret_once_then_manage(client: TestClient) -> None:
    created = client.post(BASE, json={"url": "https://hooks.example.com/k", "description": "ops",
                                      "filters": {"kinds": ["alert"], "role": "merchant", "customer_id": "CUST-1"}},
                          headers=auth())
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and sub["state"] == "active" and sub["created_by"] == "u-operator"
    assert sub["filters"] == {"kinds": ["alert"], "role": "merchant", "customer_id": "CUST-1", "driver_id": None,
                              "warehouse_id": None, "order_id": None}
    one = client.get(f"{BASE}/{sub['id']}", headers=auth()).json()
    assert "secret" not in one and one["url"] == "https://hooks.example.com/k"
    assert [s["id"] for s in client.get(BASE, headers=auth()).json()["subscriptions"]] == [sub["id"]]
    assert client.post(f"{BASE}/{sub['id']}/pause", headers=auth()).json()["state"] == "paused"
    assert client.get(BASE, params={"state": "active"}, headers=auth()).json()["subscriptions"] == []
    assert client.post(f"{BASE}/{sub['id']}/resume", headers=auth()).json()["state"] == "active"
    rotated = client.post(f"{BASE}/{sub['id']}/rotate-secret", json={"grace_s": 600}, headers=auth()).json()
    assert rotated["secret"] != sub["secret"] and rotated["subscription"]["previous_secret_valid_until"]
    assert client.get(f"{BASE}/{sub['id']}/deliveries", headers=auth()).json() == {"deliveries": []}
    assert client.get(f"{BASE}/{sub['id']}/dead-letters", headers=auth()).json() == {"deliveries": []}
    assert client.delete(f"{BASE}/{sub['id']}", headers=auth()).status_code == 204
    assert client.get(f"{BASE}/{sub['id']}", headers=auth()).status_code == 404
    assert client.post(f"{BASE}/{sub['id']}/pause", headers=auth()).status_code == 404


@pytest.mark.parametrize(("body", "loc"), [
    ({"url": "ftp://example.com/x"}, ["body", "url"]),
    ({"url": "not a url"}, ["body", "url"]),
    ({"url": "http://h/x", "filters": {"kinds": ["gps"]}}, ["body", "filters", "kinds", 0]),
    ({"url": "http://h/x", "filters": {"kinds": []}}, ["body", "filters", "kinds"]),
    ({"url": "http://h/x", "filters": {"role": "admin"}}, ["body", "filters", "role"]),
    ({"url": "http://h/x", "filters": {"role": "driver"}}, ["body", "filters", "driver_id"]),
    ({}, ["body", "url"]),
])
def test_bad_input_is_422_naming_the_field(client: TestClient, body: dict, loc: list) -> None:
    answer = client.post(BASE, json=body, headers=auth())
    assert answer.status_code == 422, answer.text
    assert loc in [d["loc"] for d in answer.json()["detail"]]


def test_only_operators(client: TestClient) -> None:
    assert client.get(BASE).status_code == 401
    for role, tenant in (("customer_service", None), ("merchant", "CUST-1"), ("driver", "DRV-1")):
        answer = client.get(BASE, headers=auth(role, tenant))
        assert answer.status_code == 403 and "operators only" in answer.json()["detail"]
        assert client.post(BASE, json={"url": "http://h/x"}, headers=auth(role, tenant)).status_code == 403


def test_ids_are_checked_and_missing_ones_are_404(client: TestClient) -> None:
    assert client.get(f"{BASE}/sub_nope", headers=auth()).status_code == 422  # not an id at all
    missing = client.get(f"{BASE}/sub_{'0' * 24}", headers=auth())
    assert missing.status_code == 404 and f"sub_{'0' * 24}" in missing.json()["detail"]
    assert client.get(f"{BASE}/sub_{'0' * 24}/deliveries", headers=auth()).status_code == 404


def test_the_openapi_document_describes_the_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"SubscriptionCreate", "SubscriptionCreated", "SubscriptionOut", "DeliveryList", "RotatedSecret"} <= set(
        schemas)
    assert "secret" in schemas["SubscriptionCreated"]["properties"]
    assert "secret" not in schemas["SubscriptionOut"]["properties"]
