"""Webhook push delivery end to end: the real test Kafka, the real delivery worker process
(``kuailv webhooks run``), the real API (``kuailv serve`` on port 28005) managing the subscriptions, and real
HTTP receivers on loopback (ephemeral ports):

- ``verifying``: checks every request with the Standard Webhooks reference library (401 if it fails);
- ``flaky``: refuses an order's deliveries for a while, then recovers (the retries carry the same webhook-id;
  the other order is not held up; the refused order's changes still arrive in order);
- ``broken``: always 500 (dead letters on Kafka with the reason; the subscription disabled with a notice);
- ``slow``: answers the first attempt of each delivery after the timeout (a timeout is a failure, retried);
- ``crashy``: the worker is killed (SIGKILL) mid-way and started again: nothing lost, no new ids.

Everything runs on private copies of the topics (``KUAILV_TOPIC_RENAMES``), its own consumer group and a
SQLite store in a temporary directory; the retry schedule is shortened to seconds. The store contract also
runs here on a real PostgreSQL (the ``postgres`` fixture, a fresh database).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from config.settings import Settings
from projections.order_state import fold
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, DEAD_LETTERS, ORDER_STATE, WEBHOOK_DEAD_LETTERS
from service.auth import issue
from simulator.events import T0, order_story
from tests.integration.kafka_helpers import (
    SyncProducer,
    all_records,
    delete_topics,
    private_topics,
    renames_env,
    wait_for,
    wait_until_serving,
)
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration
PORT = 28005
API_SECRET = "w" * 40
CODEC = AvroCodec()
# 7 attempts within ~9.5 s: retry ceilings 0.5, 1, 2, 2, 2, 2 s (full jitter); 1 s timeout; disabled after 2
# dead letters in a row
RETRY_ENV = {"KUAILV_WEBHOOK_RETRY_FIRST_S": "0.5", "KUAILV_WEBHOOK_RETRY_FACTOR": "2",
             "KUAILV_WEBHOOK_RETRY_MAX_S": "2", "KUAILV_WEBHOOK_RETRY_WINDOW_S": "10", "KUAILV_WEBHOOK_TIMEOUT_S": "1",
             "KUAILV_WEBHOOK_DISABLE_AFTER_FAILURES": "2", "KUAILV_WEBHOOK_REFRESH_S": "0"}
MAX_ATTEMPTS = 7
QUICK_VERSIONS = 4  # the order the flaky receiver lets through first


# ----------------------------------------------------------------------------- HTTP receivers
@dataclass
class Hit:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    status: int
    started: float
    verified: bool | None = None

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on an ephemeral loopback port; ``respond(hit, receiver) -> (status, delay_s)``."""

    def __init__(self, name: str, respond: Callable[[Hit, Receiver], tuple[int, float]]) -> None:
        self.name = name
        self.respond = respond
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.secrets: list[str] = []  # set after the subscription is created
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hit = Hit(self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", ""),
                          self.headers.get("webhook-signature", ""), body, 0, time.monotonic())
                status, delay = receiver.respond(hit, receiver)
                hit.status = status
                with receiver.lock:
                    receiver.hits.append(hit)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the worker gave up waiting (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=f"receiver-{name}")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{self.name}"

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def delivered(self) -> list[Hit]:
        """The 2xx hits, in arrival order."""
        return [h for h in self.snapshot() if 200 <= h.status < 300]

    def headers_of(self, hit: Hit) -> dict[str, str]:
        return {"webhook-id": hit.webhook_id, "webhook-timestamp": hit.timestamp, "webhook-signature": hit.signature}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verifying(hit: Hit, r: Receiver) -> tuple[int, float]:
    """A receiver as the spec says: verify with the reference library, 401 when it does not verify."""
    try:
        Webhook(r.secrets[0]).verify(hit.body, r.headers_of(hit))
        hit.verified = True
        return 200, 0.0
    except (WebhookVerificationError, IndexError):
        hit.verified = False
        return 401, 0.0


def always_500(hit: Hit, r: Receiver) -> tuple[int, float]:
    return 500, 0.0


def slow_first_attempt(hit: Hit, r: Receiver) -> tuple[int, float]:
    first = all(h.webhook_id != hit.webhook_id for h in r.snapshot())
    return 200, (2.0 if first else 0.0)


def refuse_first_attempts(hit: Hit, r: Receiver) -> tuple[int, float]:
    """503 on the first attempt of every delivery, then 200."""
    first = all(h.webhook_id != hit.webhook_id for h in r.snapshot())
    return (503 if first else 200), 0.0


# ----------------------------------------------------------------------------- records
def order_states(order_id: str, customer: str) -> list[dict[str, Any]]:
    """The order's projection after each of its events (what the order worker publishes)."""
    events = order_story(order_id, T0, ending="signed")
    events[0][1]["customer_id"] = customer
    views, state = [], None
    for event_type, event in events:
        state = fold(state, event_type, event).state
        views.append(state["view"])
    return views


def alert_record(order_id: str, customer: str, rule: str = "late-delivery") -> dict[str, Any]:
    return {"alert_id": f"{rule}/order/{order_id}", "rule_id": rule, "rule_version": 1, "severity": "CRITICAL",
            "status": "OPEN", "order_id": order_id, "driver_id": "DRV-001", "vehicle_id": "VAN-001",
            "warehouse_id": "WH-BJ-CY-01", "customer_id": customer, "opened_at": T0, "updated_at": T0,
            "resolved_at": None, "occurrences": 1, "message": "not signed 30 min after the window",
            "evidence": {"window_end": str(T0)}, "location": None,
            "audience": ["OPERATOR", "CUSTOMER_SERVICE", "MERCHANT"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- the running system
@dataclass
class Hooks:
    settings: Settings
    tag: str
    topics: dict[str, str]
    env: dict[str, str]
    logs: Path
    metrics_url: str
    worker: ProjectProcess | None = None
    receivers: dict[str, Receiver] = field(default_factory=dict)
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    producer: SyncProducer | None = None

    def token(self, role: str = "operator", tenant: str | None = None) -> str:
        return issue(API_SECRET, f"test-{role}", role, tenant)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token()}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def subscribe(self, name: str, receiver: Receiver, **filters: Any) -> dict[str, Any]:
        status, sub = self.call("POST", "/webhooks/subscriptions",
                                {"url": receiver.url, "description": name, "filters": filters})
        assert status == 201, sub
        receiver.secrets = [sub["secret"]]
        self.receivers[name] = receiver
        self.subs[name] = sub
        return sub

    def start_worker(self) -> None:
        self.worker = ProjectProcess(["webhooks", "run", "--loglevel", "info"], self.env,
                                     self.logs / "webhooks.log").start()

    def send(self, topic: str, key: str, record_type: str, value: dict[str, Any]) -> int:
        assert self.producer is not None
        return self.producer.send(self.topics[topic], key.encode(), CODEC.encode(record_type, value))

    def send_orders(self, *orders: tuple[str, str], versions: range | None = None) -> dict[int, tuple[str, int]]:
        """Interleave the orders' state records (order id, customer); ref -> (order id, version)."""
        sent = {}
        states = {oid: order_states(oid, customer) for oid, customer in orders}
        for i in versions or range(len(next(iter(states.values())))):
            for oid, views in states.items():
                ref = self.send(ORDER_STATE.name, oid, "OrderState", views[i])
                sent[ref] = (oid, views[i]["version"])
        return sent

    def deliveries(self, name: str, path: str = "deliveries") -> list[dict[str, Any]]:
        status, body = self.call("GET", f"/webhooks/subscriptions/{self.subs[name]['id']}/{path}?limit=500")
        assert status == 200, body
        return body["deliveries"]

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.logs / "webhooks.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def hooks(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    tag = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("webhooks")
    topics = private_topics(stack.kafka_bootstrap, f"wh{tag}", [ALERTS, ORDER_STATE, DEAD_LETTERS,
                                                                WEBHOOK_DEAD_LETTERS])
    metrics_port = free_port()
    env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-wh-{tag}", "KUAILV_API_SECRET": API_SECRET,
           "KUAILV_TOPIC_RENAMES": renames_env(topics), "KUAILV_WORKER_BATCH_SECONDS": "0.1",
           "KUAILV_WEBHOOK_STORE": f"sqlite:///{logs / 'webhooks.sqlite'}",
           "KUAILV_AUDIT_STORE": f"sqlite:///{logs / 'audit.sqlite'}",
           "KUAILV_WEBHOOK_METRICS_PORT": str(metrics_port), **RETRY_ENV}
    h = Hooks(stack, tag, topics, env, logs, f"http://127.0.0.1:{metrics_port}/metrics")
    api = ProjectProcess(["serve", "--port", str(PORT)], env, logs / "serve.log").start()
    try:
        wait_until_serving(f"http://127.0.0.1:{PORT}", what=f"kuailv serve ({api.log_tail(10)})")
        h.subscribe("verifying", Receiver("verifying", verifying), kinds=["order_change", "alert"],
                    customer_id="CUST-V")
        h.subscribe("ops", Receiver("ops", verifying), kinds=["alert"], role="operator")
        h.subscribe("flaky", Receiver("flaky", refuse_first_attempts), kinds=["order_change"], customer_id="CUST-F")
        h.subscribe("broken", Receiver("broken", always_500), kinds=["alert"], customer_id="CUST-B")
        h.subscribe("slow", Receiver("slow", slow_first_attempt), kinds=["order_change"], customer_id="CUST-S")
        h.subscribe("crashy", Receiver("crashy", refuse_first_attempts), kinds=["order_change"],
                    customer_id="CUST-R")
        h.producer = SyncProducer(stack.kafka_bootstrap)
        h.start_worker()
        yield h
    finally:
        if h.worker is not None:
            h.worker.stop()
        api.stop()
        for r in h.receivers.values():
            r.close()
        delete_topics(stack.kafka_bootstrap, topics.values())


# ----------------------------------------------------------------------------- the tests
def test_subscriptions_are_managed_through_the_api(hooks: Hooks) -> None:
    status, listed = hooks.call("GET", "/webhooks/subscriptions")
    assert status == 200 and {s["description"] for s in listed["subscriptions"]} >= set(hooks.subs)
    assert all("secret" not in s for s in listed["subscriptions"])  # shown only when created
    status, body = hooks.call("GET", "/webhooks/subscriptions", token=hooks.token("merchant", "CUST-V"))
    assert status == 403 and "operators only" in body["detail"]
    status, body = hooks.call("POST", "/webhooks/subscriptions", {"url": "ftp://example.com/x"})
    assert status == 422 and ["body", "url"] in [d["loc"] for d in body["detail"]]
    status, body = hooks.call("POST", "/webhooks/subscriptions", {"url": "http://x/y", "filters": {"role": "driver"}})
    assert status == 422 and ["body", "filters", "driver_id"] in [d["loc"] for d in body["detail"]]
    status, spare = hooks.call("POST", "/webhooks/subscriptions", {"url": "http://127.0.0.1:9/spare",
                                                                     "filters": {"order_id": "KL-NONE"}})
    assert status == 201
    assert hooks.call("POST", f"/webhooks/subscriptions/{spare['id']}/pause")[1]["state"] == "paused"
    assert hooks.call("DELETE", f"/webhooks/subscriptions/{spare['id']}")[0] == 204
    assert hooks.call("GET", f"/webhooks/subscriptions/{spare['id']}")[0] == 404
    from audit.store import AuditStore  # every change is in the audit trail, by whom

    store = AuditStore.from_url(hooks.env["KUAILV_AUDIT_STORE"])
    try:
        trail = [(e.kind, e.actor.role if e.actor else None) for e in store.by_subject(spare["id"])]
        assert store.verify("subscriptions").ok
    finally:
        store.close()
    assert trail == [("subscription.create", "operator"), ("subscription.pause", "operator"),
                     ("subscription.delete", "operator")], trail


def test_deliveries_are_signed_and_verify_with_the_reference_library(hooks: Hooks) -> None:
    order_a, order_b = f"KLV{hooks.tag}A", f"KLV{hooks.tag}B"
    sent = hooks.send_orders((order_a, "CUST-V"), (order_b, "CUST-V"))
    hooks.send_orders((f"KLV{hooks.tag}X", "CUST-OTHER"))  # another customer's: not for this subscriber
    hooks.send(ALERTS.name, f"late-delivery/order/{order_a}", "Alert", alert_record(order_a, "CUST-V"))
    hooks.producer.flush()  # type: ignore[union-attr]
    receiver = hooks.receivers["verifying"]
    wait_for(lambda: len(receiver.delivered()) >= len(sent) + 1, 60, "every change and the alert at the receiver")
    time.sleep(1)  # nothing more may come
    hits = receiver.snapshot()
    assert all(h.verified for h in hits), [h.status for h in hits]
    assert len(hits) == len(sent) + 1 and len({h.webhook_id for h in hits}) == len(hits)
    docs = [h.doc for h in hits]
    assert {d["data"].get("orderId") or d["data"].get("order_id") for d in docs} == {order_a, order_b}
    assert sorted(d["type"] for d in docs).count("alert.opened") == 1
    for order in (order_a, order_b):  # each order's changes in version order
        versions = [d["data"]["version"] for d in docs if d["type"] == "order.changed" and
                    d["data"]["orderId"] == order]
        assert versions == sorted(versions) == list(range(1, len(versions) + 1))


def test_a_receiver_that_recovers_gets_the_same_id_and_orders_stay_in_order(hooks: Hooks) -> None:
    slow_order, quick_order = f"KLF{hooks.tag}A", f"KLF{hooks.tag}B"
    receiver = hooks.receivers["flaky"]
    released = threading.Event()
    quick_count = QUICK_VERSIONS

    def respond(hit: Hit, r: Receiver) -> tuple[int, float]:
        """Refuse the slow order until every change of the quick order has arrived (a subscriber-wide
        queue would deadlock here and dead-letter), and the first attempt of every delivery."""
        order = hit.doc["data"]["orderId"]
        quick_done = sum(1 for h in r.delivered() if h.doc["data"]["orderId"] == quick_order) >= quick_count
        if quick_done:
            released.set()
        if order == slow_order and not released.is_set():
            return 503, 0.0
        return refuse_first_attempts(hit, r)

    receiver.respond = respond
    sent = hooks.send_orders((slow_order, "CUST-F"), (quick_order, "CUST-F"), versions=range(QUICK_VERSIONS))
    hooks.producer.flush()  # type: ignore[union-attr]
    wait_for(lambda: len(receiver.delivered()) >= len(sent), 90, "every change at the flaky receiver")
    hits = receiver.snapshot()
    delivered = {h.webhook_id: h for h in hits if h.status == 200}
    assert len(delivered) == len(sent)  # one id per record
    failed = [h for h in hits if h.status != 200]
    assert failed and {h.webhook_id for h in failed} <= set(delivered)  # every refused attempt came back, same id
    for h in failed:
        assert h.body == delivered[h.webhook_id].body
    quick_last = max(h.started for h in delivered.values() if h.doc["data"]["orderId"] == quick_order)
    slow_first_ok = min(h.started for h in delivered.values() if h.doc["data"]["orderId"] == slow_order)
    assert quick_last < slow_first_ok  # the refused order did not hold the other one up
    for order in (slow_order, quick_order):
        ok = sorted((h for h in delivered.values() if h.doc["data"]["orderId"] == order), key=lambda h: h.started)
        assert [h.doc["data"]["version"] for h in ok] == list(range(1, len(ok) + 1))
        for prev, nxt in itertools.pairwise(ok):  # version n+1 was first tried after n was delivered
            first_try = min(h.started for h in hits if h.webhook_id == nxt.webhook_id)
            assert first_try >= prev.started


def test_timeouts_are_failures_and_are_retried(hooks: Hooks) -> None:
    order = f"KLS{hooks.tag}A"
    sent = hooks.send_orders((order, "CUST-S"), versions=range(3))
    hooks.producer.flush()  # type: ignore[union-attr]
    receiver = hooks.receivers["slow"]

    def all_delivered() -> list[dict[str, Any]] | None:
        rows = hooks.deliveries("slow")
        return rows if len(rows) == len(sent) and all(d["status"] == "delivered" for d in rows) else None

    rows = wait_for(all_delivered, 60, "every change delivered after its timed-out first attempt")
    assert all(d["attempts"] >= 2 for d in rows), rows
    per_id: dict[str, int] = {}
    for h in receiver.snapshot():
        per_id[h.webhook_id] = per_id.get(h.webhook_id, 0) + 1
    assert len(per_id) == len(sent) and all(n >= 2 for n in per_id.values())  # the same id, again
    assert {d["delivery_id"] for d in rows} == {h.webhook_id for h in receiver.snapshot()}
    metrics = urllib.request.urlopen(hooks.metrics_url, timeout=10).read().decode()
    assert _metric(metrics, 'kuailv_webhook_deliveries_total{outcome="timeout"}') >= len(sent)
    assert _metric(metrics, "kuailv_webhook_retries_total") >= len(sent)


def test_a_receiver_that_never_recovers_gets_dead_letters_and_is_disabled(hooks: Hooks) -> None:
    orders = [f"KLB{hooks.tag}{i}" for i in range(3)]
    refs = {hooks.send(ALERTS.name, f"late-delivery/order/{o}", "Alert", alert_record(o, "CUST-B")): o
            for o in orders}
    positions = hooks.producer.flush()  # type: ignore[union-attr]
    sub_id = hooks.subs["broken"]["id"]
    dead_topic = hooks.topics[WEBHOOK_DEAD_LETTERS.name]

    def dead_letters() -> list[dict[str, Any]]:
        return [CODEC.decode(r.value).value for r in all_records(hooks.settings.kafka_bootstrap, dead_topic)
                if CODEC.decode(r.value).value["subscription_id"] == sub_id]

    dead = wait_for(lambda: len(dead_letters()) >= len(orders) and dead_letters(), 60,
                    "a dead letter for each delivery on Kafka")
    exhausted = [d for d in dead if d["reason_code"] == "RETRIES_EXHAUSTED"]
    assert len(exhausted) >= 2
    for d in exhausted:
        assert (d["attempts"], d["last_status"]) == (MAX_ATTEMPTS, 500) and "HTTP 500" in d["reason"]
        assert d["url"] == hooks.receivers["broken"].url and json.loads(d["body"])["type"] == "alert.opened"
    sources = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in dead}
    assert sources == {(ALERTS.name, *positions[ref]) for ref in refs}  # where each came from
    assert {d["reason_code"] for d in dead} <= {"RETRIES_EXHAUSTED", "SUBSCRIPTION_DISABLED"}
    status, sub = hooks.call("GET", f"/webhooks/subscriptions/{sub_id}")
    assert status == 200 and sub["state"] == "disabled"
    assert "2 deliveries in a row were dead-lettered" in sub["disabled_reason"]
    stored = hooks.deliveries("broken", "dead-letters")
    assert {d["delivery_id"] for d in stored} == {d["delivery_id"] for d in dead}
    # the notice: an alert on the alert topic, which the operators' subscription receives, and a log line
    notice_id = f"webhook_disabled/subscription/{sub_id}"
    on_alerts = all_records(hooks.settings.kafka_bootstrap, hooks.topics[ALERTS.name])
    notices = [CODEC.decode(r.value).value for r in on_alerts if r.key == notice_id.encode()]
    assert notices and notices[0]["status"] == "OPEN" and notices[0]["rule_id"] == "webhook_disabled"
    ops = hooks.receivers["ops"]
    wait_for(lambda: any(h.doc["data"]["alert_id"] == notice_id for h in ops.delivered()), 30,
             "the disable notice at the operators' webhook")
    assert all(h.verified for h in ops.snapshot())
    lines = [x for x in hooks.log_lines() if x.get("subscription_id") == sub_id]
    assert any(x["message"].startswith("webhook subscription disabled") for x in lines)
    assert any(x.get("delivery_id") and x.get("topic") == ALERTS.name and "offset" in x for x in lines)
    # resumed: it delivers again and the notice resolves
    hooks.receivers["broken"].respond = lambda hit, r: (200, 0.0)
    assert hooks.call("POST", f"/webhooks/subscriptions/{sub_id}/resume")[1]["state"] == "active"
    wait_for(lambda: any(CODEC.decode(r.value).value["status"] == "RESOLVED" for r in
                         all_records(hooks.settings.kafka_bootstrap, hooks.topics[ALERTS.name])
                         if r.key == notice_id.encode()), 30, "the notice resolved")


def test_a_rotated_secret_signs_twice_during_the_grace_period(hooks: Hooks) -> None:
    sub = hooks.subs["verifying"]
    receiver = hooks.receivers["verifying"]
    status, rotated = hooks.call("POST", f"/webhooks/subscriptions/{sub['id']}/rotate-secret", {"grace_s": 600})
    assert status == 200 and rotated["subscription"]["previous_secret_valid_until"]
    old, new = sub["secret"], rotated["secret"]
    receiver.secrets = [new]
    order = f"KLV{hooks.tag}R"
    before = len(receiver.snapshot())
    hooks.send(ALERTS.name, f"late-delivery/order/{order}", "Alert", alert_record(order, "CUST-V"))
    hooks.producer.flush()  # type: ignore[union-attr]
    hit = wait_for(lambda: [h for h in receiver.snapshot()[before:] if h.status == 200], 30, "the next delivery")[0]
    assert len(hit.signature.split()) == 2
    for secret in (new, old):
        Webhook(secret).verify(hit.body, receiver.headers_of(hit))


def test_a_worker_killed_mid_way_loses_nothing_and_keeps_the_ids(hooks: Hooks) -> None:
    receiver = hooks.receivers["crashy"]
    orders = [(f"KLR{hooks.tag}A", "CUST-R"), (f"KLR{hooks.tag}B", "CUST-R")]
    sent = hooks.send_orders(*orders, versions=range(3))
    hooks.producer.flush()  # type: ignore[union-attr]
    wait_for(lambda: receiver.snapshot(), 30, "the first attempts")
    assert hooks.worker is not None
    hooks.worker.kill()  # SIGKILL: attempts in flight, retries pending
    # As if it had died before committing anything: the new worker reads both topics from the start again,
    # every record of every earlier test included.
    rewind(hooks, f"kuailv-wh-{hooks.tag}-webhooks", [hooks.topics[ALERTS.name], hooks.topics[ORDER_STATE.name]])
    sent |= hooks.send_orders(*orders, versions=range(3, 6))  # and more while it is down
    hooks.producer.flush()  # type: ignore[union-attr]
    hooks.start_worker()
    wait_for(lambda: len({h.webhook_id for h in receiver.delivered()}) >= len(sent), 120,
             f"every change delivered after the restart ({hooks.worker.log_tail(5)})")
    time.sleep(3)  # let the re-read of the earlier records finish (it must not send anything new)
    ids_of: dict[tuple[str, int], set[str]] = {}
    for h in receiver.snapshot():
        ids_of.setdefault((h.doc["data"]["orderId"], h.doc["data"]["version"]), set()).add(h.webhook_id)
    assert set(ids_of) == set(sent.values())  # nothing lost
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # one id per record, before and after the crash
    for order, _ in orders:  # each order's changes first arrived in version order, across the crash
        first_ok: dict[int, float] = {}
        for h in receiver.delivered():
            if h.doc["data"]["orderId"] == order:
                version = h.doc["data"]["version"]
                first_ok[version] = min(first_ok.get(version, h.started), h.started)
        assert sorted(first_ok, key=first_ok.__getitem__) == sorted(first_ok), first_ok
    for r in hooks.receivers.values():  # no receiver got a record again under a new id
        bodies: dict[bytes, set[str]] = {}
        for h in r.snapshot():
            bodies.setdefault(h.body, set()).add(h.webhook_id)
        assert all(len(ids) == 1 for ids in bodies.values()), r.name


def rewind(hooks: Hooks, group: str, topics: list[str]) -> None:
    """Commit offset 0 for ``group`` on every partition of ``topics`` (once the killed member has left)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": hooks.settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10).topics
        start = [TopicPartition(t, p, 0) for t in topics for p in meta[t].partitions]

        def commit() -> bool:
            try:
                consumer.commit(offsets=start, asynchronous=False)
                return True
            except KafkaException:  # the dead member still holds the group until its session times out
                return False

        wait_for(commit, 60, f"the offsets of {group} rewound", interval=1.0)
    finally:
        consumer.close()


def test_the_store_contract_on_postgresql(postgres: Any) -> None:
    from infra import postgres as infra_postgres
    from tests.contract.webhook_store_contract import CONTRACTS
    from webhooks.store import WebhookStore

    name = f"kuailv_wh_{uuid.uuid4().hex[:12]}"
    url = infra_postgres.create_database(postgres, name)
    try:
        for contract in CONTRACTS:
            store = WebhookStore.from_url(url + f"?schema=c_{contract.__name__.removeprefix('contract_')[:40]}")
            try:
                contract(store)
            finally:
                store.close()
    finally:
        infra_postgres.drop_database(postgres, name)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
