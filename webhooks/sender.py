"""The delivery worker's sending side: due outbox rows -> signed HTTP POSTs, outcomes -> the store.

One dispatcher thread leases due deliveries (``WebhookStore.claim_due``: the oldest pending one of each
subscription and order) up to ``concurrency`` at a time and hands them to a thread pool; each attempt
signs the body (``webhooks.signing``), POSTs it with httpx (``timeout_s`` per connect/read/write, no
redirects followed), and records the outcome with the pure policy's decision
(``webhooks.delivery_policy``) in one transaction. Between rounds it publishes what the store says is
not on Kafka yet: dead letters (``kuailv.webhook-dead-letters.v1``) and disable notices
(``kuailv.alerts.v1``), flushed before they are marked published (a crash in between publishes them again,
same keys).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from schemas.topics import ALERTS, WEBHOOK_DEAD_LETTERS
from service import metrics
from streams.sinks.errors import SinkError
from streams.sinks.kafka_output import Output
from webhooks.delivery_policy import (
    Decision,
    GiveUp,
    Health,
    Outcome,
    Retry,
    RetryPolicy,
    after_attempt,
    classify,
    health_after,
)
from webhooks.notices import dead_letter_record, disabled_alert
from webhooks.signing import webhook_headers
from webhooks.sql import StoreError
from webhooks.store import AttemptApplied, Decide, DueDelivery, WebhookStore

log = logging.getLogger(__name__)
METRIC_OUTCOME = {"delivered": "delivered", "timeout": "timeout"}  # everything else counts as "failed"


def post(client: httpx.Client, d: DueDelivery, now_s: int, timeout_s: float) -> Outcome:
    """One signed attempt; never raises for what the network or the receiver did."""
    headers = webhook_headers(d.secrets, d.delivery_id, now_s, d.body)
    try:
        with client.stream("POST", d.url, content=d.body, headers=headers, timeout=timeout_s) as resp:
            return classify(resp.status_code, None if resp.is_success else resp.reason_phrase or None)
    except httpx.TimeoutException as exc:
        return classify(None, f"timeout after {timeout_s:g}s ({type(exc).__name__})", timed_out=True)
    except Exception as exc:  # connection errors, and URLs httpx cannot use: a failure of this delivery
        return classify(None, f"{type(exc).__name__}: {exc}")


class Sender:
    def __init__(self, store: WebhookStore, policy: RetryPolicy, client: httpx.Client, output: Output, codec: Any,
                 *, consumer: str, clock_ms: Callable[[], int], rng: random.Random | None = None,
                 concurrency: int = 16, poll_s: float = 0.5) -> None:
        self.store = store
        self.policy = policy
        self.client = client
        self.output = output
        self.codec = codec
        self.consumer = consumer
        self._now = clock_ms
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.concurrency = max(1, concurrency)
        self.poll_s = poll_s
        # longer than an attempt (its timeout, per phase) and the bookkeeping retries of ``_record`` (7.5 s)
        self.lease_ms = round((2 * policy.timeout_s + 10) * 1000)
        self._wake = threading.Event()
        self._publish_due = threading.Event()  # an attempt made dead letters or a notice: publish now
        self._next_publish = 0.0

    def wake(self) -> None:
        """New deliveries are in the outbox: look now instead of at the next poll."""
        self._wake.set()

    # ------------------------------------------------------------------ the dispatcher loop
    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-send")
        inflight: set[Future[None]] = set()
        backoff = 0.5
        try:
            while not stop.is_set():
                self._wake.clear()  # before looking: a wake-up from now on is not lost
                try:
                    if self._publish_due.is_set() or time.monotonic() >= self._next_publish:
                        self._publish_due.clear()
                        self._next_publish = time.monotonic() + self.poll_s
                        self.publish_pending()
                    now = self._now()
                    for d in self.store.claim_due(now, now + self.lease_ms, self.concurrency - len(inflight)):
                        inflight.add(pool.submit(self.attempt, d))
                    backoff = 0.5
                except (SinkError, StoreError) as exc:
                    log.error("webhook sender: %s; retrying in %.1fs", exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                inflight = self._wait(inflight, stop)
        finally:
            done, pending = wait(inflight, timeout=self.policy.timeout_s + 5)
            self._collect(done)
            if pending:
                log.warning("webhook sender: %d attempts still running at shutdown (their leases expire and they "
                            "are retried with the same ids)", len(pending))
            pool.shutdown(wait=False, cancel_futures=True)
            try:
                self.publish_pending()
            except (SinkError, StoreError) as exc:
                log.error("webhook sender: final publish failed (done at the next start): %s", exc)

    def _wait(self, inflight: set[Future[None]], stop: threading.Event) -> set[Future[None]]:
        """Until an attempt finishes, new work arrives, or the poll interval passes."""
        if len(inflight) >= self.concurrency:
            done, rest = wait(inflight, timeout=self.poll_s, return_when=FIRST_COMPLETED)
        else:
            deadline = time.monotonic() + self.poll_s
            while not stop.is_set() and time.monotonic() < deadline and not self._wake.is_set():
                if any(f.done() for f in inflight):
                    break
                self._wake.wait(0.05)
            done = {f for f in inflight if f.done()}
            rest = inflight - done
        self._collect(done)
        return set(rest)

    @staticmethod
    def _collect(done: set[Future[None]]) -> None:
        for f in done:
            exc = f.exception()
            if exc is not None:
                log.error("webhook attempt failed in our code: %s: %s", type(exc).__name__, exc, exc_info=exc)

    # ------------------------------------------------------------------ one attempt
    def attempt(self, d: DueDelivery) -> None:
        started = self._now()
        outcome = post(self.client, d, started // 1000, self.policy.timeout_s)
        metrics.WEBHOOK_DELIVERIES.labels(METRIC_OUTCOME.get(outcome.kind, "failed")).inc()
        finished = self._now()

        def decide(attempts: int, health: Health) -> tuple[Decision, Health, str | None]:
            with self._rng_lock:
                decision = after_attempt(self.policy, attempts, outcome, finished, self._rng)
            new_health, disable = health_after(self.policy, health, outcome, isinstance(decision, GiveUp), finished)
            return decision, new_health, disable

        applied = self._record(d, outcome, started, finished, decide)
        context = {"subscription_id": d.subscription_id, "delivery_id": d.delivery_id, "topic": d.source_topic,
                   "partition": d.source_partition, "offset": d.source_offset, "url": d.url,
                   "event_type": d.event_type, "order_key": d.order_key, "outcome": outcome.kind,
                   "status": outcome.status, "duration_ms": finished - started}
        if applied is None:
            log.info("webhook attempt ended after its delivery was closed", extra=context)
            return
        decision = applied.decision
        context["attempt"] = applied.attempts
        if isinstance(decision, Retry):
            metrics.WEBHOOK_RETRIES.inc()
            log.info("webhook attempt failed: %s; retry at %d", outcome.describe(), decision.at_ms,
                     extra={**context, "next_attempt_at": decision.at_ms})
        elif isinstance(decision, GiveUp):
            self._publish_due.set()
            log.warning("webhook delivery dead-lettered: %s", decision.reason,
                        extra={**context, "reason_code": decision.reason_code})
        else:
            log.info("webhook delivered", extra=context)
        if applied.disabled_reason is not None:
            self._publish_due.set()
            metrics.WEBHOOK_DISABLED.inc()
            log.warning("webhook subscription disabled: %s", applied.disabled_reason,
                        extra={**context, "reason": applied.disabled_reason,
                               "consecutive_failures": applied.health.consecutive_failures,
                               "dead_lettered_pending": applied.dead_lettered_pending})
            self.wake()

    def _record(self, d: DueDelivery, outcome: Outcome, started: int, finished: int,
                decide: Decide) -> AttemptApplied | None:
        """``store.record_attempt``, retried while the store is unreachable (else the lease runs out and the
        receiver gets the same webhook-id again)."""
        delay = 0.5
        for _ in range(4):
            try:
                return self.store.record_attempt(d.delivery_id, outcome, started, finished, decide)
            except SinkError as exc:
                log.error("recording attempt of %s failed: %s; retrying in %.1fs", d.delivery_id, exc, delay,
                          extra={"subscription_id": d.subscription_id, "delivery_id": d.delivery_id})
                time.sleep(delay)
                delay *= 2
        raise SinkError(f"delivery {d.delivery_id}: outcome {outcome.describe()} not recorded; it will be retried "
                        "with the same webhook-id when its lease ends")

    # ------------------------------------------------------------------ what goes to Kafka
    def publish_pending(self) -> int:
        """Dead letters and disable notices the store has not seen on Kafka yet; returns how many."""
        rows = self.store.unpublished_dead_letters()
        notices = self.store.pending_notices()
        if not rows and not notices:
            return 0
        now = self._now()
        for row in rows:
            record = dead_letter_record(row, self.consumer, now)
            self.output.add(WEBHOOK_DEAD_LETTERS.name, row["delivery_id"].encode(),
                            self.codec.encode("WebhookDeadLetter", record))
        for sub in notices:
            alert = disabled_alert(sub, resolved=sub.notice == "resolve_pending", now_ms=now)
            self.output.add(ALERTS.name, alert["alert_id"].encode(), self.codec.encode("Alert", alert),
                            alert["updated_at"])
        self.output.flush()
        self.store.mark_dead_letters_published([r["delivery_id"] for r in rows])
        for row in rows:
            metrics.WEBHOOK_DEAD_LETTERS.inc()
            log.warning("webhook dead letter published: %s", row["dead_reason"],
                        extra={"subscription_id": row["subscription_id"], "delivery_id": row["delivery_id"],
                               "topic": row["source_topic"], "partition": row["source_partition"],
                               "offset": row["source_offset"], "reason_code": row["dead_reason_code"],
                               "attempts": row["attempts"], "last_status": row["last_status"],
                               "last_error": row["last_error"]})
        for sub in notices:
            self.store.mark_notice(sub.id, sub.notice or "", "open" if sub.notice == "open_pending" else None)
            log.warning("webhook subscription %s notice published", sub.id,
                        extra={"subscription_id": sub.id, "notice": "resolved" if sub.notice == "resolve_pending"
                               else "disabled", "reason": sub.disabled_reason, "url": sub.url})
        return len(rows) + len(notices)
