"""The delivery worker's two halves without the network: the intake agent (records -> outbox) on an
in-memory store, and the sender against httpx's ``MockTransport`` receivers. The real thing (Kafka, HTTP on
loopback, the worker process) is ``tests/integration/test_webhooks.py``."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, ORDER_STATE
from tests.unit.webhooks.test_events import alert, order_state
from webhooks.delivery_policy import RetryPolicy
from webhooks.intake import WebhookIntake
from webhooks.sender import Sender
from webhooks.signing import delivery_id
from webhooks.store import WebhookStore
from webhooks.subscriptions import Filters, Subscription

CODEC = AvroCodec(epoch_ms=True)
T0 = 1_780_293_600_000
POLICY = RetryPolicy(first_delay_s=1, factor=2, max_delay_s=2, window_s=3, timeout_s=1, disable_after_failures=1,
                     disable_after_s=3600)


class FakeOutput:
    def __init__(self) -> None:
        self.added: list[tuple[Any, ...]] = []
        self.flushed: list[tuple[Any, ...]] = []

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None) -> None:
        self.added.append((topic, key, value))

    def flush(self) -> int:
        self.flushed, self.added = self.flushed + self.added, []
        return len(self.flushed)


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def subscription(sub_id: str, url: str, **filters: Any) -> Subscription:
    return Subscription(sub_id, url, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", Filters(**filters), "active",
                        "test", T0, T0)


def records() -> list[SourceRecord]:
    state = order_state()
    return [SourceRecord(ORDER_STATE.name, 2, 10, state["order_id"].encode(), CODEC.encode("OrderState", state)),
            SourceRecord(ALERTS.name, 4, 7, b"late", CODEC.encode("Alert", alert(customer_id="CUST-0001"))),
            SourceRecord(ALERTS.name, 4, 8, b"junk", b"not avro")]


def test_the_intake_enqueues_once_per_subscription_and_record() -> None:
    store = WebhookStore.from_url("memory://")
    store.create(subscription("sub_all", "http://r/all"))
    store.create(subscription("sub_alerts", "http://r/alerts", kinds=("alert",)))
    store.create(subscription("sub_other", "http://r/other", customer_id="CUST-9"))
    output, woken = FakeOutput(), threading.Event()
    intake = WebhookIntake(CODEC, store, output, consumer="test", wall_clock_ms=Clock(), refresh_s=0,
                           on_enqueued=woken.set)
    staged = intake.process(records())
    assert staged.counts.dead_letters == 1 and staged.counts.applied == 3
    intake.write(staged)
    assert woken.is_set()
    (dead,) = output.flushed
    assert dead[1] == f"{ALERTS.name}[4]@8".encode()  # the undecodable record: a dead letter, the batch goes on
    ids = {d["delivery_id"] for s in ("sub_all", "sub_alerts") for d in store.deliveries(s)}
    assert ids == {delivery_id("sub_all", ORDER_STATE.name, 2, 10), delivery_id("sub_all", ALERTS.name, 4, 7),
                   delivery_id("sub_alerts", ALERTS.name, 4, 7)}
    assert store.deliveries("sub_other") == []
    woken.clear()
    intake.write(intake.process(records()))  # the batch again (a restart before the commit): nothing new
    assert {d["delivery_id"] for s in ("sub_all", "sub_alerts") for d in store.deliveries(s)} == ids
    assert not woken.is_set()


def receiver(answers: dict[str, list[int]], seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers each path with its list of statuses in turn (the last one repeats)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        statuses = answers[request.url.path]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if status == 0:
            raise httpx.ConnectTimeout("too slow", request=request)
        return httpx.Response(status)

    return httpx.MockTransport(handle)


def sender_for(store: WebhookStore, transport: httpx.MockTransport, output: FakeOutput, clock: Clock) -> Sender:
    return Sender(store, POLICY, httpx.Client(transport=transport), output, CODEC, consumer="test/webhooks",
                  clock_ms=clock, rng=random.Random(5), concurrency=4, poll_s=0.01)


def enqueue_all(store: WebhookStore, *subs: Subscription) -> None:
    for s in subs:
        store.create(s)
    intake = WebhookIntake(CODEC, store, FakeOutput(), consumer="test", wall_clock_ms=Clock(), refresh_s=0)
    intake.write(intake.process(records()[:2]))


def test_signed_attempts_retries_with_the_same_id_and_dead_letters() -> None:
    store, output, clock, seen = WebhookStore.from_url("memory://"), FakeOutput(), Clock(), []
    flaky = subscription("sub_flaky", "http://r/flaky", kinds=("order_change",))
    broken = subscription("sub_broken", "http://r/broken", kinds=("alert",))
    enqueue_all(store, flaky, broken)
    sender = sender_for(store, receiver({"/flaky": [503, 0, 200], "/broken": [500]}, seen), output, clock)
    for _ in range(POLICY.max_attempts):
        for d in store.claim_due(clock.ms, clock.ms + 60_000, 10):
            sender.attempt(d)
        clock.ms += 3_000  # past any jittered retry of this schedule
    by_path: dict[str, list[httpx.Request]] = {}
    for r in seen:
        by_path.setdefault(r.url.path, []).append(r)
    assert len(by_path["/flaky"]) == 3 and len(by_path["/broken"]) == POLICY.max_attempts
    assert len({r.headers["webhook-id"] for r in by_path["/flaky"]}) == 1  # every retry: the same id
    for r in seen:  # the reference library signs the same (the fake clock's timestamps are not "now")
        sent_at = datetime.fromtimestamp(int(r.headers["webhook-timestamp"]), tz=UTC)
        assert Webhook(flaky.secret).sign(r.headers["webhook-id"], sent_at, r.content.decode()) == \
            r.headers["webhook-signature"]
    assert store.deliveries("sub_flaky")[0]["status"] == "delivered"
    assert store.get("sub_broken").state == "disabled"  # type: ignore[union-attr]
    assert sender.publish_pending() == 2  # the dead letter and the disable notice
    (dl_topic, dl_key, dl_value), (al_topic, al_key, al_value) = output.flushed
    dead = CODEC.decode(dl_value).value
    assert dl_topic == "kuailv.webhook-dead-letters.v1" and dl_key.decode() == dead["delivery_id"]
    assert (dead["reason_code"], dead["attempts"], dead["last_status"]) == ("RETRIES_EXHAUSTED",
                                                                            POLICY.max_attempts, 500)
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (ALERTS.name, 4, 7)
    notice = CODEC.decode(al_value).value
    assert al_topic == ALERTS.name and al_key == b"webhook_disabled/subscription/sub_broken"
    assert notice["rule_id"] == "webhook_disabled" and notice["status"] == "OPEN"
    assert notice["evidence"]["subscription_id"] == "sub_broken"
    assert sender.publish_pending() == 0  # published once
    store.resume("sub_broken", clock.ms)
    assert sender.publish_pending() == 1
    assert CODEC.decode(output.flushed[-1][2]).value["status"] == "RESOLVED"


def test_the_loop_sends_and_stops() -> None:
    store, output, seen = WebhookStore.from_url("memory://"), FakeOutput(), []
    enqueue_all(store, subscription("sub_ok", "http://r/ok"))
    sender = Sender(store, POLICY, httpx.Client(transport=receiver({"/ok": [204]}, seen)), output, CODEC,
                    consumer="test", clock_ms=lambda: T0, concurrency=2, poll_s=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        for _ in range(200):
            if len(seen) == 2:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert sorted(r.headers["webhook-id"] for r in seen) == sorted(d["delivery_id"] for d in
                                                                   store.deliveries("sub_ok", "delivered"))
