"""The query API (``kuailv serve``) against the real stack: orders projected by the real worker, read over
real HTTP with tokens of every role; an order missing from Redis is rebuilt from the log. Every REST answer is
checked against the app's OpenAPI document (``api_harness.ApiClient``).

Three orders on private topics: KLAPI..A (customer CUST-A, signed by DRV-001), ..B (customer CUST-B,
re-dispatched to another driver), ..C (CUST-A; its Redis hash is deleted after projection, so the API
must rebuild it from kuailv.order-events.v1).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, FLEET, ORDER_EVENTS, ORDER_STATE, VAN_ORDERS
from service.auth import issue
from simulator.events import WAREHOUSE
from tests.integration.api_harness import SECRET, ApiClient, serve, story
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration
PORT = 28001  # not the test profile's API port (28000): the e2e main job may run one


class Api:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8].upper()
        self.settings = settings
        self.topics = private_topics(settings.kafka_bootstrap, self.tag.lower(),
                                     [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, FLEET, DEAD_LETTERS])
        self.prefix = f"api{self.tag.lower()}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-api-{self.tag}",
                    "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.1",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics), "KUAILV_API_SECRET": SECRET}
        self.a, self.b, self.c = (f"KLAPI{self.tag}{s}" for s in "ABC")
        self.http = ApiClient(PORT)

    def token(self, role: str, tenant: str | None = None) -> str:
        return self.http.token(role, tenant)

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return self.http.get(path, token)


@pytest.fixture(scope="module")
def api(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(stack)
    logs = tmp_path_factory.mktemp("api")
    worker = ProjectProcess(["worker", "--agents", "orders", "--loglevel", "warning"], a.env,
                            logs / "worker.log").start()
    server = serve(PORT, a.env, logs)
    try:
        codec = AvroCodec()
        producer = SyncProducer(stack.kafka_bootstrap)
        for oid, customer, ending in ((a.a, "CUST-A", "signed"), (a.b, "CUST-B", "redispatched"),
                                      (a.c, "CUST-A", "signed")):
            for t, e in story(oid, customer, ending=ending):
                producer.send(a.topics[ORDER_EVENTS.name], oid.encode(), codec.encode(t, e))
        producer.flush()
        r = redis.Redis.from_url(stack.redis_url)
        wait_for(lambda: all(r.hget(f"{a.prefix}:order:{o}", "status") in (b"SIGNED", b"DELIVERING")
                             for o in (a.a, a.b, a.c)), 60, "the worker to project the three orders")
        worker.stop()
        r.delete(f"{a.prefix}:order:{a.c}")  # Redis lost it; the log still has it
        yield a
    finally:
        worker.stop()
        server.stop()
        delete_topics(stack.kafka_bootstrap, a.topics.values())


def test_no_token_or_a_bad_one_is_401(api: Api) -> None:
    assert api.get(f"/orders/{api.a}")[0] == 401
    status, body = api.get(f"/orders/{api.a}", issue("y" * 40, "u", "operator"))
    assert status == 401 and "invalid token" in body["detail"]


def test_an_order_by_role_and_tenant(api: Api) -> None:
    status, doc = api.get(f"/orders/{api.a}", api.token("operator"))
    assert status == 200 and doc["orderId"] == api.a and doc["status"] == "SIGNED" and doc["source"] == "redis"
    assert doc["driverInfo"]["phone"] and doc["signature"]["receiverName"]
    assert api.get(f"/orders/{api.a}", api.token("merchant", "CUST-A"))[0] == 200
    status, body = api.get(f"/orders/{api.a}", api.token("merchant", "CUST-B"))
    assert status == 403 and "CUST-B" in body["detail"]
    assert api.get(f"/orders/{api.a}", api.token("driver", doc["driverInfo"]["driverId"]))[0] == 200
    assert api.get(f"/orders/{api.a}", api.token("driver", "DRV-NOT-MINE"))[0] == 403
    status, staff = api.get(f"/orders/{api.a}", api.token("warehouse_staff", doc["warehouseId"]))
    assert status == 200 and staff["driverInfo"]["phone"] is None and staff["destination"] is None
    assert api.get(f"/orders/{api.a}", api.token("warehouse_staff", "WH-OTHER"))[0] == 403


def test_an_order_missing_from_redis_is_rebuilt_from_the_log(api: Api) -> None:
    status, doc = api.get(f"/orders/{api.c}", api.token("customer", "CUST-A"))
    assert status == 200 and doc["source"] == "log" and doc["status"] == "SIGNED" and doc["orderId"] == api.c
    assert api.get(f"/orders/{api.c}", api.token("customer", "CUST-B"))[0] == 403  # the policy holds for it too
    status, body = api.get(f"/orders/KLAPI{api.tag}NOPE", api.token("operator"))
    assert status == 404 and "neither in Redis nor on" in body["detail"]


def test_lists_are_scoped_paged_and_cross_tenant_lists_are_denied(api: Api) -> None:
    status, page = api.get("/orders?limit=1", api.token("merchant", "CUST-A"))
    assert status == 200 and [o["orderId"] for o in page["orders"]] == [api.a] and page["nextCursor"]
    assert api.get(f"/orders?cursor={page['nextCursor']}", api.token("merchant", "CUST-A"))[1]["orders"] == []
    assert api.get("/orders?customer=CUST-B", api.token("merchant", "CUST-A"))[0] == 403
    status, ops = api.get("/orders?customer=CUST-B", api.token("operator"))
    assert status == 200 and [o["orderId"] for o in ops["orders"]] == [api.b]
    status, none = api.get("/orders?customer=CUST-A&status=DELIVERING&limit=1", api.token("operator"))
    assert status == 200 and none == {"orders": [], "nextCursor": None}  # indexes intersected before paging
    status, signed = api.get("/orders?status=SIGNED&limit=1", api.token("merchant", "CUST-A"))
    assert [o["orderId"] for o in signed["orders"]] == [api.a] and signed["nextCursor"]
    assert api.get("/orders?status=NOT_A_STATUS", api.token("operator"))[0] == 422
    assert api.get("/orders?cursor=%%%", api.token("merchant", "CUST-A"))[0] == 422


def test_orders_by_warehouse_from_its_index(api: Api) -> None:
    wh = WAREHOUSE["id"]
    status, page = api.get(f"/orders?warehouse={wh}&limit=2", api.token("operator"))
    assert status == 200 and [o["orderId"] for o in page["orders"]] == [api.a, api.b] and page["nextCursor"]
    status, staff = api.get("/orders?limit=5", api.token("warehouse_staff", wh))  # pinned, no status needed
    assert status == 200 and [o["orderId"] for o in staff["orders"]] == [api.a, api.b]
    assert all(o["destination"] is None and o["driverInfo"]["phone"] is None for o in staff["orders"])
    status, signed = api.get("/orders?status=SIGNED&limit=1", api.token("warehouse_staff", wh))
    assert [o["orderId"] for o in signed["orders"]] == [api.a] and signed["nextCursor"]  # a full page
    assert api.get(f"/orders?warehouse={wh}", api.token("warehouse_staff", "WH-OTHER"))[0] == 403
    assert api.get("/orders?warehouse=WH-OTHER", api.token("warehouse_staff", "WH-OTHER"))[1]["orders"] == []
    assert api.get(f"/orders?warehouse={wh}", api.token("merchant", "CUST-A"))[0] == 403


def test_alerts_and_positions_obey_the_policy(api: Api) -> None:
    assert api.get("/alerts", api.token("customer_service"))[0] == 200
    status, body = api.get("/alerts", api.token("driver", "DRV-001"))
    assert status == 403 and "their own orders" in body["detail"]
    assert api.get(f"/orders/{api.b}/alerts", api.token("merchant", "CUST-B"))[0] == 200
    assert api.get(f"/orders/{api.b}/alerts", api.token("merchant", "CUST-A"))[0] == 403
    assert api.get("/drivers/DRV-001/position", api.token("driver", "DRV-002"))[0] == 403
    status, body = api.get("/drivers/DRV-001/position", api.token("merchant", "CUST-A"))  # A's driver, no GPS here
    assert status == 404 and "no position" in body["detail"]
    assert api.get("/drivers/DRV-002/position", api.token("merchant", "CUST-A"))[0] == 403  # B's driver


def test_openapi_and_the_offline_docs_page(api: Api) -> None:
    status, spec = api.get("/openapi.json")
    assert status == 200 and {"/orders/{order_id}", "/orders", "/alerts", "/readyz"} <= set(spec["paths"])
    status, page = api.get("/docs")
    assert status == 200 and "/orders/{order_id}" in page and "cdn" not in page.lower() and "<script" not in page
    assert api.get("/readyz")[0] == 200
    assert {"/orders/{order_id}/track", "/graphql"} <= set(spec["paths"])
    assert api.http.checked >= 30  # every REST answer of this module matched the document
