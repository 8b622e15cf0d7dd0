"""The live feed (``/ws``) against the real stack: the real worker projects orders onto a private order-state
topic, alerts are produced onto a private alert topic, and real WebSocket clients of every role subscribe
through ``kuailv serve``. A client that drops and comes back with its cursor gets exactly what it missed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, DEAD_LETTERS, FLEET, GPS, ORDER_ETAS, ORDER_EVENTS, ORDER_STATE, VAN_ORDERS
from service.auth import issue
from simulator.events import T0, order_story
from tests.integration.kafka_helpers import (
    SyncProducer,
    delete_topics,
    private_topics,
    renames_env,
    wait_for,
    wait_until_serving,
)
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.integration
PORT = 28012
SECRET = "l" * 40
CODEC = AvroCodec()


class Live:
    def __init__(self, settings: Settings, logs: Any) -> None:
        self.tag = uuid.uuid4().hex[:8].upper()
        self.settings = settings
        self.topics = private_topics(settings.kafka_bootstrap, f"live{self.tag.lower()}",
                                     [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, FLEET, DEAD_LETTERS, ALERTS, ORDER_ETAS,
                                      GPS])
        self.prefix = f"live{self.tag.lower()}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-live-{self.tag}",
                    "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.05",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics), "KUAILV_API_SECRET": SECRET}
        self.logs = logs
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.redis = redis.Redis.from_url(settings.redis_url)

    def order_id(self, suffix: str) -> str:
        return f"KLLIVE{self.tag}{suffix}"

    def send_events(self, order_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        for t, e in events:
            self.producer.send(self.topics[ORDER_EVENTS.name], order_id.encode(), CODEC.encode(t, e))
        self.producer.flush()

    def status(self, order_id: str) -> str | None:
        raw = self.redis.hget(f"{self.prefix}:order:{order_id}", "status")
        return raw.decode() if raw else None

    def send_alert(self, alert_id: str, customer: str, order_id: str) -> None:
        alert = {"alert_id": alert_id, "rule_id": "cold_chain_breach", "rule_version": 1, "severity": "CRITICAL",
                 "status": "OPEN", "order_id": order_id, "driver_id": "DRV-001", "vehicle_id": "VAN-001",
                 "warehouse_id": "WH-CY", "customer_id": customer, "opened_at": T0, "updated_at": T0,
                 "resolved_at": None, "occurrences": 1, "message": "van above 8 °C", "evidence": {},
                 "location": None, "audience": ["OPERATOR", "CUSTOMER_SERVICE"]}
        self.producer.send(self.topics[ALERTS.name], alert_id.encode(), CODEC.encode("Alert", alert))
        self.producer.flush()

    def ws(self, role: str, tenant: str | None, subscribe: Any, resume: str | None = None) -> ClientConnection:
        token = issue(SECRET, f"test-{role}", role, tenant)
        conn = connect(f"ws://127.0.0.1:{PORT}/ws?token={token}", open_timeout=10, legacy=True)
        conn.send(json.dumps({"subscribe": subscribe, **({"resume": resume} if resume else {})}))
        return conn


def recv(conn: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    return json.loads(conn.recv(timeout=timeout))


def changes_until(conn: ClientConnection, done: Any, timeout: float = 20) -> list[dict[str, Any]]:
    """Changes received until ``done(changes)`` holds (position messages are skipped)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {[(c['kind'], c['data'].get('version')) for c in got]}"
        msg = recv(conn, left)
        if msg["type"] == "change":
            got.append(msg)
    return got


def refused(conn: ClientConnection) -> tuple[int | None, str]:
    detail = ""
    try:
        while True:
            msg = recv(conn, 10)
            detail = msg.get("detail", detail)
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), detail


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    logs = tmp_path_factory.mktemp("live")
    lv = Live(stack, logs)
    worker = ProjectProcess(["worker", "--agents", "orders", "--loglevel", "warning"], lv.env,
                            logs / "worker.log").start()
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(PORT)], cwd=ROOT,
                              env={**os.environ, **lv.env}, stdout=open(logs / "serve.log", "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT, start_new_session=True)

    try:
        wait_until_serving(f"http://127.0.0.1:{PORT}")
        yield lv
    finally:
        worker.stop()
        server.terminate()
        server.wait(15)
        delete_topics(stack.kafka_bootstrap, lv.topics.values())


def _story(order_id: str, customer: str) -> list[tuple[str, dict[str, Any]]]:
    events = order_story(order_id, T0, ending="signed")
    events[0][1]["customer_id"] = customer
    return events


def test_a_customer_follows_an_order_and_resumes_without_missing_or_repeating(live: Live) -> None:
    oid = live.order_id("A")
    story = _story(oid, "CUST-A")
    live.send_events(oid, story[:1])
    wait_for(lambda: live.status(oid) is not None, 30, "the worker to project the order")
    conn = live.ws("customer", "CUST-A", {"order": oid})
    assert recv(conn)["type"] == "subscribed"
    live.send_events(oid, story[1:3])
    first = changes_until(conn, lambda got: any(c["data"]["version"] >= 3 for c in got))
    assert all(c["kind"] == "order" and c["orderId"] == oid for c in first)
    cursor = first[-1]["cursor"]
    seen = first[-1]["data"]["version"]
    conn.close()

    live.send_events(oid, story[3:])  # while the customer is away
    wait_for(lambda: live.status(oid) == "SIGNED", 30, "the order to be signed")
    back = live.ws("customer", "CUST-A", {"order": oid}, resume=cursor)
    hello = recv(back)
    assert hello["type"] == "subscribed" and hello["resumed"] >= 1
    missed = changes_until(back, lambda got: len(got) == hello["resumed"])
    versions = [c["data"]["version"] for c in missed]
    assert versions == sorted(set(versions)) and versions[0] > seen, versions  # nothing twice, in order
    assert missed[-1]["data"]["status"] == "SIGNED"
    assert recv(back)["type"] == "position"  # the cursor moves to the live start
    back.close()


def test_every_change_reaches_the_merchant_live_and_in_order(live: Live) -> None:
    oid = live.order_id("M")
    conn = live.ws("merchant", "CUST-M", {"customer": "CUST-M"})
    assert recv(conn)["type"] == "subscribed"
    live.send_events(oid, _story(oid, "CUST-M"))
    got = changes_until(conn, lambda got: any(c["data"]["status"] == "SIGNED" for c in got))
    versions = [c["data"]["version"] for c in got]
    assert versions == sorted(set(versions))
    assert got[-1]["data"]["driverInfo"]["phone"]  # a merchant sees contact data
    conn.close()


def test_alerts_go_to_customer_service_and_to_the_owning_merchant_only(live: Live) -> None:
    service = live.ws("customer_service", None, {"alerts": True})
    merchant = live.ws("merchant", "CUST-X", {"customer": "CUST-X"})
    assert recv(service)["type"] == "subscribed" and recv(merchant)["type"] == "subscribed"
    live.send_alert(f"AL-{live.tag}-Y", "CUST-Y", live.order_id("Y"))
    live.send_alert(f"AL-{live.tag}-X", "CUST-X", live.order_id("X"))
    both = changes_until(service, lambda got: len(got) == 2)
    assert {c["data"]["customer_id"] for c in both} == {"CUST-X", "CUST-Y"} and all(c["kind"] == "alert" for c in both)
    mine = changes_until(merchant, lambda got: len(got) == 1)
    assert mine[0]["data"]["alert_id"] == f"AL-{live.tag}-X"
    with pytest.raises(TimeoutError):  # and nothing of CUST-Y's
        recv(merchant, 1.5)
    service.close()
    merchant.close()


def test_the_operations_map_gets_van_positions_coalesced_and_a_merchant_may_not_follow_the_fleet(live: Live) -> None:
    ops = live.ws("operator", None, {"fleet": True})
    assert recv(ops)["type"] == "subscribed"
    driver = f"DRV-{live.tag}"
    for i, lat in enumerate((39.90, 39.91, 39.92)):  # three pings within a second: one frame, the newest fix
        ping = {"event_id": f"gps-{live.tag}-{i}", "driver_id": driver, "vehicle_id": "VAN-9", "event_time": T0 + i,
                "producer": "test", "lat": lat, "lng": 116.4, "speed_kmh": 30.0, "heading_deg": 0.0,
                "accuracy_m": None}
        live.producer.send(live.topics[GPS.name], driver.encode(), CODEC.encode("GpsPing", ping))
    live.producer.flush()
    deadline = time.monotonic() + 10
    seen: dict[str, Any] = {}
    while seen.get("lat") != 39.92:
        msg = recv(ops, max(0.1, deadline - time.monotonic()))
        if msg["type"] == "positions":
            seen = next((p for p in msg["positions"] if p["driverId"] == driver), seen)
    assert seen == {"driverId": driver, "vehicleId": "VAN-9", "lat": 39.92, "lng": 116.4, "atMs": T0 + 2,
                    "speedKmh": 30.0}
    ops.close()
    merchant = live.ws("merchant", "CUST-X", {"fleet": True})
    code, detail = refused(merchant)
    assert code == 4403 and "every van" in detail


def test_warehouse_staff_get_the_redacted_view(live: Live) -> None:
    oid = live.order_id("W")
    story = _story(oid, "CUST-W")
    warehouse = story[0][1]["warehouse_id"]
    conn = live.ws("warehouse_staff", warehouse, {"warehouse": warehouse})
    assert recv(conn)["type"] == "subscribed"
    live.send_events(oid, story)
    got = changes_until(conn, lambda got: any(c["orderId"] == oid and c["data"]["driverInfo"] for c in got))
    last = [c for c in got if c["orderId"] == oid and c["data"]["driverInfo"]][-1]["data"]
    assert last["driverInfo"]["phone"] is None and last["destination"] is None
    conn.close()


TENANTS = {"operator": None, "customer_service": None, "merchant": "CUST-A", "customer": "CUST-A",
           "driver": "DRV-A", "warehouse_staff": "WH-A"}
INTERESTS = {"own customer": {"customer": "CUST-A"}, "other customer": {"customer": "CUST-B"},
             "own driver": {"driver": "DRV-A"}, "other driver": {"driver": "DRV-B"},
             "own warehouse": {"warehouse": "WH-A"}, "other warehouse": {"warehouse": "WH-B"},
             "all alerts": {"alerts": True}}
ALLOWED = {  # the RBAC table of the live feed, written out (not derived from the policy it checks)
    "operator": set(INTERESTS), "customer_service": set(INTERESTS),
    "merchant": {"own customer"}, "customer": {"own customer"}, "driver": {"own driver"},
    "warehouse_staff": {"own warehouse"},
}


@pytest.mark.parametrize("interest", list(INTERESTS))
@pytest.mark.parametrize("role", list(TENANTS))
def test_rbac_table_of_the_live_feed(live: Live, role: str, interest: str) -> None:
    conn = live.ws(role, TENANTS[role], INTERESTS[interest])
    if interest in ALLOWED[role]:
        assert recv(conn)["type"] == "subscribed"
        conn.close()
    else:
        code, detail = refused(conn)
        assert code == 4403 and detail, (role, interest)


@pytest.mark.parametrize(("role", "tenant", "subscribe", "code"), [
    ("merchant", "CUST-B", {"customer": "CUST-A"}, 4403),  # another tenant's orders
    ("merchant", "CUST-A", {"alerts": True}, 4403),  # all alerts: customer service only
    ("driver", "DRV-X", {"driver": "DRV-Y"}, 4403),
    ("warehouse_staff", "WH-A", {"warehouse": "WH-B"}, 4403),
    ("customer", "CUST-A", {"nonsense": 1}, 4400),
    ("operator", None, {"order": "KLNOSUCHORDER"}, 4404),
])
def test_cross_tenant_and_bad_subscriptions_are_refused(live: Live, role: str, tenant: str | None,
                                                        subscribe: Any, code: int) -> None:
    code_seen, detail = refused(live.ws(role, tenant, subscribe))
    assert code_seen == code and detail


def test_another_customers_order_is_refused_by_the_order_policy(live: Live) -> None:
    oid = live.order_id("A")
    wait_for(lambda: live.status(oid) is not None, 30, "order A")
    code, detail = refused(live.ws("customer", "CUST-B", {"order": oid}))
    assert code == 4403 and "CUST-B" in detail


def test_no_token_is_refused(live: Live) -> None:
    conn = connect(f"ws://127.0.0.1:{PORT}/ws", open_timeout=10, legacy=True)  # refused before it subscribes
    code, detail = refused(conn)
    assert code == 4401 and "token" in detail


def test_metrics_count_requests_websocket_clients_and_consumer_lag(live: Live) -> None:
    conn = live.ws("customer_service", None, {"alerts": True})
    assert recv(conn)["type"] == "subscribed"
    urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=5).read()
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=20) as resp:
        text = resp.read().decode()
        assert resp.headers["content-type"].startswith("text/plain")
    conn.close()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["kuailv_ws_clients"]) >= 1
    assert float(samples['kuailv_api_requests_total{method="GET",route="/healthz",status="200"}']) >= 1
    assert 'kuailv_api_request_seconds_bucket{le="0.01",method="GET",route="/healthz"}' in samples
    group = live.env["KUAILV_CONSUMER_GROUP"]
    assert float(samples[f'kuailv_consumer_lag{{group="{group}"}}']) >= 0  # the orders + telemetry group
    assert f'kuailv_consumer_lag{{group="{group}-geofences"}}' in samples
    assert f'kuailv_consumer_lag{{group="{group}-webhooks"}}' in samples
