"""The dashboard endpoints without a server behind them: the app declares them with their response models, a
missing token is 401, the policy answers before any store is asked (403 with its reason, for every role the
contract leaves out), bad parameters are 422, and a refused acknowledgement is in the audit trail."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from config.settings import load
from schemas.codec import AvroCodec
from service.app import create_app
from service.auth import issue

SECRET = "s" * 40
# role, tenant, path: a read the contract does not give that role (the policy says no before any store is read)
DENIED = [
    ("merchant", "CUST-1", "/dashboard/funnel"),
    ("driver", "DRV-1", "/dashboard/fleet"),
    ("warehouse_staff", "WH-1", "/dashboard/map-orders?active=false"),
    ("customer", "CUST-1", "/dashboard/pipeline"),
    ("merchant", "CUST-1", "/dashboard/kpis?dimension=city"),
    ("merchant", "CUST-1", "/dashboard/kpis?dimension=merchant&id=CUST-2"),
    ("driver", "DRV-1", "/dashboard/kpis?dimension=warehouse&id=WH-1"),
    ("warehouse_staff", "WH-1", "/dashboard/kpis?dimension=warehouse&id=WH-2"),
    ("warehouse_staff", "WH-1", "/dashboard/stock?warehouse=WH-2"),
    ("driver", "DRV-1", "/dashboard/stock?warehouse=WH-1"),
    ("merchant", "CUST-1", "/dashboard/merchant-stock?customer=CUST-2"),
    ("warehouse_staff", "WH-1", "/dashboard/merchant-stock?customer=CUST-1"),
]


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []

    def record(self, who: Any, action: str, target: str | None, details: dict[str, Any], at_ms: int | None = None
               ) -> None:
        self.entries.append((who.role, action, target, details))


@pytest.fixture(scope="module")
def client() -> TestClient:
    # no store answers here: a read that reached Redis would fail, not pass
    settings = dataclasses.replace(load("test"), api_secret=SECRET, redis_url="redis://127.0.0.1:9/0",
                                   kafka_bootstrap="127.0.0.1:9", influx_url="http://127.0.0.1:9")
    return TestClient(create_app(settings, AvroCodec()))


def token(role: str, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue(SECRET, f'u-{role}', role, tenant)}"}


def test_the_endpoints_and_their_models_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in (("/dashboard/funnel", "Funnel"), ("/dashboard/fleet", "Fleet"),
                        ("/dashboard/map-orders", "MapOrders"), ("/dashboard/warehouses", "Warehouses"),
                        ("/dashboard/kpis", "Kpis"), ("/dashboard/pipeline", "Pipeline"),
                        ("/dashboard/stock", "Stock"), ("/dashboard/merchant-stock", "MerchantStock")):
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}, path
        assert {"401", "403", "422"} <= set(paths[path]["get"]["responses"])
    ack = paths["/alerts/{alert_id}/ack"]["post"]
    assert ack["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ack"}


@pytest.mark.parametrize("path", ["/dashboard/funnel", "/dashboard/warehouses", "/dashboard/kpis"])
def test_no_token_is_401(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401


@pytest.mark.parametrize(("role", "tenant", "path"), DENIED)
def test_the_policy_refuses_with_its_reason(client: TestClient, role: str, tenant: str, path: str) -> None:
    answer = client.get(path, headers=token(role, tenant))
    assert answer.status_code == 403, answer.text
    reason = answer.json()["detail"]
    assert role in reason and (tenant in reason or "operators and customer service" in reason), reason


def test_bad_parameters_are_422(client: TestClient) -> None:
    ops = token("operator")
    assert client.get("/dashboard/kpis?dimension=planet", headers=ops).status_code == 422
    assert client.get("/dashboard/kpis?dimension=city&days=0", headers=ops).status_code == 422
    assert client.get("/dashboard/kpis?dimension=city&days=91", headers=ops).status_code == 422
    missing = client.get("/dashboard/kpis?dimension=warehouse", headers=ops)
    assert missing.status_code == 422 and "id" in missing.json()["detail"]
    assert client.get("/dashboard/stock", headers=ops).status_code == 422
    assert client.get("/dashboard/merchant-stock", headers=ops).status_code == 422


def test_the_warehouses_need_no_store(client: TestClient) -> None:
    answer = client.get("/dashboard/warehouses", headers=token("driver", "DRV-1"))
    assert answer.status_code == 200
    assert {w["id"] for w in answer.json()["warehouses"]} >= {"WH-BJ-CY-01", "WH-BJ-FT-01", "DEPOT-BJ-DX-01"}


def test_a_refused_acknowledgement_is_403_and_audited() -> None:
    from service.auth import AuthError, verify
    from service.dashboard_routes import dashboard_router
    from service.reads import ReadError

    def caller(authorization: Annotated[str | None, Header()] = None) -> Any:
        try:
            return verify(SECRET, authorization)
        except AuthError as exc:
            raise HTTPException(401, str(exc)) from exc

    audit = Audit()
    settings = dataclasses.replace(load("test"), api_secret=SECRET, redis_url="redis://127.0.0.1:9/0")
    app = FastAPI()
    app.include_router(dashboard_router(settings, caller, audit))  # type: ignore[arg-type]
    app.add_exception_handler(ReadError, lambda _, exc: JSONResponse({"detail": str(exc)}, exc.status))
    answer = TestClient(app).post("/alerts/late-delivery/order/KL1/ack", json={"note": "calling"},
                                  headers=token("merchant", "CUST-1"))
    assert answer.status_code == 403 and "late-delivery/order/KL1" in answer.json()["detail"]
    assert audit.entries == [("merchant", "alert.ack", "late-delivery/order/KL1",
                              {"outcome": "denied", "reason": answer.json()["detail"]})]
