"""What the webhook store promises, as assertions run against every database it supports.

``tests/unit/webhooks/test_store_sqlite.py`` runs every contract on SQLite (a file, and memory://);
``tests/integration/test_webhooks.py`` runs the very same functions on PostgreSQL (the ``postgres``
fixture, a fresh database per run). Each contract gets an empty store.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from webhooks.delivery_policy import GiveUp, Health, Outcome, Retry, RetryPolicy, after_attempt, classify, health_after
from webhooks.store import AttemptApplied, Conflict, NewDelivery, NotFound, WebhookStore
from webhooks.subscriptions import Filters, Subscription

Contract = Callable[[WebhookStore], None]
T0 = 1_780_293_600_000
POLICY = RetryPolicy(first_delay_s=1, factor=2, max_delay_s=4, window_s=7, timeout_s=1, disable_after_failures=2,
                     disable_after_s=3600)


def sub(sub_id: str, *, state: str = "active", **filters: object) -> Subscription:
    return Subscription(sub_id, f"http://127.0.0.1:9/{sub_id}", f"whsec_{sub_id}",
                        Filters(**filters), state, "test-operator", T0, T0)  # type: ignore[arg-type]


def row(sub_id: str, offset: int, order: str = "KL1", *, dedupe: str | None = None) -> NewDelivery:
    return NewDelivery(f"msg_{sub_id}_{offset}", sub_id, dedupe or f"order/{order}@{offset}/0", order, "order.changed",
                       "kuailv.order-state.v1", 0, offset, b'{"n": %d}' % offset)


def attempt(store: WebhookStore, delivery_id: str, outcome: Outcome, now: int) -> AttemptApplied | None:
    rng = random.Random(7)

    def decide(attempts: int, health: Health) -> tuple[object, Health, str | None]:
        decision = after_attempt(POLICY, attempts, outcome, now, rng)
        new, reason = health_after(POLICY, health, outcome, isinstance(decision, GiveUp), now)
        return decision, new, reason

    return store.record_attempt(delivery_id, outcome, now, now, decide)  # type: ignore[arg-type]


def contract_subscriptions_round_trip(store: WebhookStore) -> None:
    created = store.create(sub("sub_a", kinds=("alert",), role="merchant", customer_id="CUST-1"))
    store.create(sub("sub_b", state="paused"))
    assert store.get("sub_a") == created
    assert store.get("sub_nope") is None
    assert [s.id for s in store.subscriptions()] == ["sub_a", "sub_b"]
    assert [s.id for s in store.subscriptions(states=("paused",))] == ["sub_b"]
    assert store.get("sub_a").filters == Filters(("alert",), "merchant", "CUST-1")  # type: ignore[union-attr]


def contract_pause_resume_rotate_delete(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    assert store.pause("sub_a", T0 + 1).state == "paused"
    assert store.resume("sub_a", T0 + 2).state == "active"
    rotated = store.rotate("sub_a", "whsec_new", T0 + 1000, T0 + 3)
    assert rotated.secret == "whsec_new" and rotated.previous_secret == "whsec_sub_a"
    assert rotated.signing_secrets(T0 + 999) == ["whsec_new", "whsec_sub_a"]
    assert rotated.signing_secrets(T0 + 1000) == ["whsec_new"]
    store.enqueue([row("sub_a", 1)], T0)
    store.delete("sub_a")
    assert store.get("sub_a") is None and store.deliveries("sub_a") == []
    for change in (lambda: store.pause("sub_a", T0), lambda: store.delete("sub_a")):
        try:
            change()
        except NotFound as exc:
            assert "sub_a" in str(exc)
        else:
            raise AssertionError("a missing subscription must be NotFound")


def contract_enqueue_is_idempotent(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    assert store.enqueue([row("sub_a", 1), row("sub_a", 2)], T0) == 2
    assert store.enqueue([row("sub_a", 1), row("sub_a", 2)], T0 + 5) == 0  # the same records again
    # the same change at another position (a re-published projection record): not delivered twice
    assert store.enqueue([row("sub_a", 9, dedupe="order/KL1@1/0")], T0) == 0
    assert store.enqueue([row("sub_gone", 1)], T0) == 0  # no such subscription
    assert [d["delivery_id"] for d in store.deliveries("sub_a")] == ["msg_sub_a_2", "msg_sub_a_1"]


def contract_one_delivery_per_order_at_a_time(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    store.enqueue([row("sub_a", 1, "KL1"), row("sub_a", 2, "KL1"), row("sub_a", 3, "KL2")], T0)
    first = store.claim_due(T0, T0 + 60_000, 10)
    assert [d.delivery_id for d in first] == ["msg_sub_a_1", "msg_sub_a_3"]  # KL1's second waits
    assert first[0].secrets == ("whsec_sub_a",) and first[0].body == b'{"n": 1}' and first[0].attempts == 0
    assert store.claim_due(T0 + 1, T0 + 60_000, 10) == []  # leased
    applied = attempt(store, "msg_sub_a_1", classify(503), T0 + 10)
    assert applied is not None and isinstance(applied.decision, Retry) and applied.attempts == 1
    assert store.claim_due(T0 + 20, T0 + 60_000, 10) == []  # KL1's head waits for its retry, KL2's is leased
    attempt(store, "msg_sub_a_1", classify(200), applied.decision.at_ms)
    nxt = store.claim_due(applied.decision.at_ms, T0 + 120_000, 10)
    assert [d.delivery_id for d in nxt] == ["msg_sub_a_2"]
    delivered = store.deliveries("sub_a", "delivered")
    assert [(d["delivery_id"], d["attempts"], d["last_status"]) for d in delivered] == [("msg_sub_a_1", 2, 200)]


def contract_a_lease_ends(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    store.enqueue([row("sub_a", 1)], T0)
    assert len(store.claim_due(T0, T0 + 1000, 10)) == 1
    assert store.claim_due(T0 + 999, T0 + 2000, 10) == []
    assert [d.delivery_id for d in store.claim_due(T0 + 1001, T0 + 2000, 10)] == ["msg_sub_a_1"]  # after a crash
    store.release("msg_sub_a_1")
    assert len(store.claim_due(T0 + 1002, T0 + 3000, 10)) == 1


def contract_paused_subscriptions_hold_their_deliveries(store: WebhookStore) -> None:
    store.create(sub("sub_a", state="paused"))
    assert store.enqueue([row("sub_a", 1)], T0) == 1
    assert store.claim_due(T0, T0 + 1000, 10) == []
    store.resume("sub_a", T0 + 1)
    assert len(store.claim_due(T0 + 2, T0 + 1000, 10)) == 1


def contract_dead_letters_and_the_disable_rule(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    store.enqueue([row("sub_a", 1, "KL1"), row("sub_a", 2, "KL2"), row("sub_a", 3, "KL3")], T0)
    now = T0
    for did in ("msg_sub_a_1", "msg_sub_a_2"):  # two orders fail through the whole schedule
        for _ in range(POLICY.max_attempts):
            applied = attempt(store, did, classify(None, "connection refused"), now)
            now += 10_000
        assert applied is not None and isinstance(applied.decision, GiveUp)
    assert applied.disabled_reason is not None and "2 deliveries in a row" in applied.disabled_reason
    assert applied.dead_lettered_pending == 1  # KL3's delivery went down with the subscription
    disabled = store.get("sub_a")
    assert disabled is not None and disabled.state == "disabled" and disabled.notice == "open_pending"
    assert disabled.health.consecutive_failures == 2 and disabled.disabled_at_ms is not None
    dead = store.unpublished_dead_letters()
    assert [(d["delivery_id"], d["dead_reason_code"]) for d in dead] == [
        ("msg_sub_a_1", "RETRIES_EXHAUSTED"), ("msg_sub_a_2", "RETRIES_EXHAUSTED"),
        ("msg_sub_a_3", "SUBSCRIPTION_DISABLED")]
    assert dead[0]["attempts"] == POLICY.max_attempts and dead[0]["last_error"] == "connection refused"
    assert dead[0]["url"] == "http://127.0.0.1:9/sub_a" and dead[0]["body"] == '{"n": 1}'
    store.mark_dead_letters_published([d["delivery_id"] for d in dead])
    assert store.unpublished_dead_letters() == []
    assert store.enqueue([row("sub_a", 4, "KL4")], now) == 0  # a disabled subscription matches nothing
    assert [s.id for s in store.pending_notices()] == ["sub_a"]
    store.mark_notice("sub_a", "open_pending", "open")
    resumed = store.resume("sub_a", now)
    assert resumed.state == "active" and resumed.health == Health() and resumed.notice == "resolve_pending"
    assert resumed.disabled_count == 1


def contract_gone_disables_at_once(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    store.enqueue([row("sub_a", 1)], T0)
    applied = attempt(store, "msg_sub_a_1", classify(410), T0)
    assert applied is not None and isinstance(applied.decision, GiveUp) and applied.decision.reason_code == "GONE"
    assert applied.disabled_reason == "the endpoint answered 410 Gone"
    try:
        store.pause("sub_a", T0 + 1)
    except Conflict as exc:
        assert "disabled" in str(exc)
    else:
        raise AssertionError("pausing a disabled subscription is a conflict")


def contract_a_success_resets_the_streak(store: WebhookStore) -> None:
    store.create(sub("sub_a"))
    store.enqueue([row("sub_a", 1, "KL1"), row("sub_a", 2, "KL2")], T0)
    for _ in range(POLICY.max_attempts):
        attempt(store, "msg_sub_a_1", classify(500), T0)
    assert store.get("sub_a").health.consecutive_failures == 1  # type: ignore[union-attr]
    attempt(store, "msg_sub_a_2", classify(204), T0 + 1)
    assert store.get("sub_a").health == Health()  # type: ignore[union-attr]
    assert attempt(store, "msg_sub_a_1", classify(200), T0 + 2) is None  # already dead: nothing changes
    assert store.counts() == {"subscriptions.active": 1, "deliveries.dead": 1, "deliveries.delivered": 1}
    assert store.purge_delivered(T0 + 2) == 1 and store.counts()["deliveries.dead"] == 1


CONTRACTS: tuple[Contract, ...] = (
    contract_subscriptions_round_trip,
    contract_pause_resume_rotate_delete,
    contract_enqueue_is_idempotent,
    contract_one_delivery_per_order_at_a_time,
    contract_a_lease_ends,
    contract_paused_subscriptions_hold_their_deliveries,
    contract_dead_letters_and_the_disable_rule,
    contract_gone_disables_at_once,
    contract_a_success_resets_the_streak,
)
