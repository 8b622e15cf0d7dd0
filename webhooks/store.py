"""The webhook store: subscriptions and the delivery outbox, in SQLite (default) or PostgreSQL
(``KUAILV_WEBHOOK_STORE``, ``webhooks.store_config``). Times are passed in (epoch ms), never read here.

Tables (created on open, idempotently):

- ``webhook_subscriptions``: one row per subscription (``webhooks.subscriptions.Subscription``).
- ``webhook_outbox``: one row per (subscription, source record) delivery. ``seq`` numbers rows in the
  order they were enqueued; ``delivery_id`` (the ``webhook-id``) and ``(subscription_id, dedupe_key)`` are
  unique, so enqueueing a record again (a redelivered Kafka batch after a restart, or a re-published
  projection record) inserts nothing. ``status``: ``pending`` -> ``delivered`` | ``dead``. A dead row keeps its
  reason and ``dead_letter_published`` says whether its Kafka record went out.

Ordering: ``claim_due`` hands out only the oldest pending row of each (subscription, order key), so the
next delivery of an order waits until the previous one is delivered or dead-lettered. A claimed row is
leased (``lease_until``): another worker skips it, and after a crash it is due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from webhooks.delivery_policy import Decision, Delivered, GiveUp, Health, Outcome, Retry
from webhooks.sql import Database, Tx, open_database
from webhooks.store_config import store_target
from webhooks.subscriptions import Filters, Subscription

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS webhook_subscriptions (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
        secret TEXT NOT NULL, previous_secret TEXT, previous_secret_until BIGINT,
        kinds TEXT NOT NULL, role TEXT, customer_id TEXT, driver_id TEXT, warehouse_id TEXT, order_id TEXT,
        state TEXT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
        consecutive_failures INTEGER NOT NULL DEFAULT 0, failing_since BIGINT,
        disabled_reason TEXT, disabled_at BIGINT, disabled_count INTEGER NOT NULL DEFAULT 0, notice TEXT)""",
    """CREATE TABLE IF NOT EXISTS webhook_outbox (
        seq {serial}, delivery_id TEXT NOT NULL UNIQUE, subscription_id TEXT NOT NULL,
        dedupe_key TEXT NOT NULL, order_key TEXT NOT NULL, event_type TEXT NOT NULL,
        source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL,
        body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL, lease_until BIGINT,
        first_attempt_at BIGINT, last_attempt_at BIGINT, last_status INTEGER, last_error TEXT,
        finished_at BIGINT, dead_reason_code TEXT, dead_reason TEXT,
        dead_letter_published INTEGER NOT NULL DEFAULT 0,
        UNIQUE (subscription_id, dedupe_key))""",
    "CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox (subscription_id, order_key, status, seq)",
    "CREATE INDEX IF NOT EXISTS webhook_outbox_dead ON webhook_outbox (status, dead_letter_published)",
)

_SUB_COLUMNS = ("id, url, description, secret, previous_secret, previous_secret_until, kinds, role, customer_id, "
                "driver_id, warehouse_id, order_id, state, created_by, created_at, updated_at, consecutive_failures, "
                "failing_since, disabled_reason, disabled_at, disabled_count, notice")
_DELIVERY_COLUMNS = ("seq, delivery_id, subscription_id, order_key, event_type, source_topic, source_partition, "
                     "source_offset, status, attempts, created_at, next_attempt_at, first_attempt_at, "
                     "last_attempt_at, last_status, last_error, finished_at, dead_reason_code, dead_reason")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """The subscription's state does not allow the change (the message says why)."""


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_id: str
    subscription_id: str
    dedupe_key: str
    order_key: str
    event_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    body: bytes


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery with what sending it needs."""

    delivery_id: str
    subscription_id: str
    url: str
    secrets: tuple[str, ...]  # the current secret, and the previous one during its grace period
    order_key: str
    event_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    body: bytes
    attempts: int  # made before this one


@dataclass(frozen=True, slots=True)
class AttemptApplied:
    decision: Decision
    attempts: int
    health: Health
    disabled_reason: str | None  # set when this attempt disabled the subscription
    dead_lettered_pending: int  # the subscription's other pending deliveries dead-lettered with it


Decide = Callable[[int, Health], tuple[Decision, Health, str | None]]


def _subscription(row: dict[str, Any]) -> Subscription:
    filters = Filters(tuple(k for k in row["kinds"].split(",") if k), row["role"], row["customer_id"],
                      row["driver_id"], row["warehouse_id"], row["order_id"])
    return Subscription(row["id"], row["url"], row["secret"], filters, row["state"], row["created_by"],
                        row["created_at"], row["updated_at"], row["description"], row["previous_secret"],
                        row["previous_secret_until"], Health(row["consecutive_failures"], row["failing_since"]),
                        row["disabled_reason"], row["disabled_at"], row["disabled_count"], row["notice"])


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.describe = db.describe
        with db.transaction(write=True) as tx:
            if db.dialect == "postgresql":  # API and worker may create the tables at the same moment
                tx.execute("SELECT pg_advisory_xact_lock(7354190)")
            for statement in SCHEMA:
                tx.execute(statement.replace("{serial}", db.serial))

    @classmethod
    def from_url(cls, url: str) -> WebhookStore:
        return cls(open_database(store_target(url)))

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ subscriptions
    def create(self, sub: Subscription) -> Subscription:
        f = sub.filters
        with self.db.transaction(write=True) as tx:
            tx.execute(f"INSERT INTO webhook_subscriptions ({_SUB_COLUMNS}) VALUES "
                       f"({', '.join('?' * 22)})",
                       (sub.id, sub.url, sub.description, sub.secret, sub.previous_secret,
                        sub.previous_secret_until_ms, ",".join(f.kinds), f.role, f.customer_id, f.driver_id,
                        f.warehouse_id, f.order_id, sub.state, sub.created_by, sub.created_at_ms, sub.updated_at_ms,
                        sub.health.consecutive_failures, sub.health.failing_since_ms, sub.disabled_reason,
                        sub.disabled_at_ms, sub.disabled_count, sub.notice))
        return sub

    def get(self, sub_id: str) -> Subscription | None:
        with self.db.transaction() as tx:
            return self._get(tx, sub_id)

    def _get(self, tx: Tx, sub_id: str, lock: bool = False) -> Subscription | None:
        rows = tx.execute(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = ?"
                          + (tx.for_update if lock else ""), (sub_id,))
        return _subscription(rows[0]) if rows else None

    def subscriptions(self, states: Iterable[str] | None = None) -> list[Subscription]:
        """Every subscription (or those in ``states``), oldest first."""
        wanted = tuple(states) if states is not None else None
        with self.db.transaction() as tx:
            if wanted is None:
                rows = tx.execute(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id")
            else:
                marks = ", ".join("?" * len(wanted))
                rows = tx.execute(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE state IN ({marks}) "
                                  "ORDER BY created_at, id", wanted)
        return [_subscription(r) for r in rows]

    def pause(self, sub_id: str, now_ms: int) -> Subscription:
        with self.db.transaction(write=True) as tx:
            sub = self._locked(tx, sub_id)
            if sub.state == "disabled":
                raise Conflict(f"subscription {sub_id} is disabled ({sub.disabled_reason}); resume it to re-enable")
            tx.execute("UPDATE webhook_subscriptions SET state = 'paused', updated_at = ? WHERE id = ?",
                       (now_ms, sub_id))
            return self._locked(tx, sub_id)

    def resume(self, sub_id: str, now_ms: int) -> Subscription:
        """Active again; a disabled subscription starts a clean streak and its notice is resolved."""
        with self.db.transaction(write=True) as tx:
            sub = self._locked(tx, sub_id)
            notice = {"open": "resolve_pending", "open_pending": None}.get(sub.notice or "", sub.notice)
            tx.execute("UPDATE webhook_subscriptions SET state = 'active', updated_at = ?, consecutive_failures = 0, "
                       "failing_since = NULL, disabled_reason = NULL, notice = ? WHERE id = ?",
                       (now_ms, notice, sub_id))
            return self._locked(tx, sub_id)

    def rotate(self, sub_id: str, new_secret: str, grace_until_ms: int, now_ms: int) -> Subscription:
        """The new secret signs from now on; the current one signs too until ``grace_until_ms``."""
        with self.db.transaction(write=True) as tx:
            sub = self._locked(tx, sub_id)
            tx.execute("UPDATE webhook_subscriptions SET secret = ?, previous_secret = ?, previous_secret_until = ?, "
                       "updated_at = ? WHERE id = ?", (new_secret, sub.secret, grace_until_ms, now_ms, sub_id))
            return self._locked(tx, sub_id)

    def delete(self, sub_id: str) -> None:
        """The subscription and its deliveries (dead letters already on Kafka stay there)."""
        with self.db.transaction(write=True) as tx:
            self._locked(tx, sub_id)
            tx.execute("DELETE FROM webhook_outbox WHERE subscription_id = ?", (sub_id,))
            tx.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (sub_id,))

    def _locked(self, tx: Tx, sub_id: str) -> Subscription:
        sub = self._get(tx, sub_id, lock=True)
        if sub is None:
            raise NotFound(f"no webhook subscription {sub_id}")
        return sub

    # ------------------------------------------------------------------ the outbox
    def enqueue(self, rows: Iterable[NewDelivery], now_ms: int) -> int:
        """Insert new deliveries (of subscriptions that still exist and are not disabled); a delivery id or
        (subscription, dedupe key) already there is skipped. Returns how many were inserted."""
        inserted = 0
        with self.db.transaction(write=True) as tx:
            for r in rows:
                tx.execute(
                    "INSERT INTO webhook_outbox (delivery_id, subscription_id, dedupe_key, order_key, event_type, "
                    "source_topic, source_partition, source_offset, body, status, attempts, created_at, "
                    "next_attempt_at) SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), "
                    "CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS TEXT), "
                    "'pending', 0, CAST(? AS BIGINT), CAST(? AS BIGINT) WHERE EXISTS (SELECT 1 FROM "
                    "webhook_subscriptions WHERE id = ? AND state <> 'disabled') ON CONFLICT DO NOTHING",
                    (r.delivery_id, r.subscription_id, r.dedupe_key, r.order_key, r.event_type, r.source_topic,
                     r.source_partition, r.source_offset, r.body.decode(), now_ms, now_ms, r.subscription_id))
                inserted += max(tx.rowcount, 0)
        return inserted

    def claim_due(self, now_ms: int, lease_until_ms: int, limit: int) -> list[DueDelivery]:
        """Lease up to ``limit`` due deliveries of active subscriptions, each the oldest pending one of its
        (subscription, order key)."""
        if limit <= 0:
            return []
        with self.db.transaction() as tx:  # read first: an idle poll takes no write lock
            rows = tx.execute(
                "SELECT d.delivery_id, d.subscription_id, s.url, s.secret, s.previous_secret, "
                "s.previous_secret_until, d.order_key, d.event_type, d.source_topic, d.source_partition, "
                "d.source_offset, d.body, d.attempts FROM webhook_outbox d JOIN webhook_subscriptions s "
                "ON s.id = d.subscription_id WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
                "AND s.state = 'active' AND (d.lease_until IS NULL OR d.lease_until < ?) AND NOT EXISTS "
                "(SELECT 1 FROM webhook_outbox p WHERE p.subscription_id = d.subscription_id "
                "AND p.order_key = d.order_key AND p.status = 'pending' AND p.seq < d.seq) "
                "ORDER BY d.next_attempt_at, d.seq LIMIT ?", (now_ms, now_ms, limit))
        if not rows:
            return []
        claimed = []
        # Rows are only ever added behind (higher seq), so a head found above is still its key's head; the
        # conditional update makes sure only one worker leases it.
        with self.db.transaction(write=True) as tx:
            for r in rows:
                tx.execute("UPDATE webhook_outbox SET lease_until = ? WHERE delivery_id = ? AND status = 'pending' "
                           "AND (lease_until IS NULL OR lease_until < ?)", (lease_until_ms, r["delivery_id"], now_ms))
                if tx.rowcount != 1:
                    continue
                secrets = (r["secret"],) + ((r["previous_secret"],) if r["previous_secret"] and
                                            (r["previous_secret_until"] or 0) > now_ms else ())
                claimed.append(DueDelivery(r["delivery_id"], r["subscription_id"], r["url"], secrets, r["order_key"],
                                           r["event_type"], r["source_topic"], r["source_partition"],
                                           r["source_offset"], r["body"].encode(), r["attempts"]))
        return claimed

    def release(self, delivery_id: str) -> None:
        """Give a claimed delivery back without an attempt (shutting down before it was sent)."""
        with self.db.transaction(write=True) as tx:
            tx.execute("UPDATE webhook_outbox SET lease_until = NULL WHERE delivery_id = ?", (delivery_id,))

    def record_attempt(self, delivery_id: str, outcome: Outcome, attempted_at_ms: int, now_ms: int,
                       decide: Decide) -> AttemptApplied | None:
        """Apply one attempt's outcome in one transaction: ``decide(attempts, health)`` (pure) says what
        happens to the delivery and the subscription's streak, and whether to disable it. None when the
        delivery is no longer pending (dead-lettered with its subscription, or deleted)."""
        with self.db.transaction(write=True) as tx:
            rows = tx.execute("SELECT subscription_id, attempts FROM webhook_outbox WHERE delivery_id = ? "
                              "AND status = 'pending'" + tx.for_update, (delivery_id,))
            if not rows:
                return None
            sub = self._get(tx, rows[0]["subscription_id"], lock=True)
            if sub is None:
                return None
            attempts = rows[0]["attempts"] + 1
            decision, health, disable_reason = decide(attempts, sub.health)
            self._update_delivery(tx, delivery_id, attempts, outcome, attempted_at_ms, now_ms, decision)
            tx.execute("UPDATE webhook_subscriptions SET consecutive_failures = ?, failing_since = ? WHERE id = ?",
                       (health.consecutive_failures, health.failing_since_ms, sub.id))
            others = 0
            if disable_reason is not None and sub.state != "disabled":
                others = self._disable(tx, sub, disable_reason, now_ms)
            else:
                disable_reason = None
        return AttemptApplied(decision, attempts, health, disable_reason, others)

    @staticmethod
    def _update_delivery(tx: Tx, delivery_id: str, attempts: int, outcome: Outcome, attempted_at_ms: int,
                         now_ms: int, decision: Decision) -> None:
        common = ("attempts = ?, first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, "
                  "last_status = ?, last_error = ?, lease_until = NULL")
        args: tuple[Any, ...] = (attempts, attempted_at_ms, attempted_at_ms, outcome.status,
                                 None if outcome.ok else outcome.describe())
        if isinstance(decision, Delivered):
            tx.execute(f"UPDATE webhook_outbox SET {common}, status = 'delivered', finished_at = ? "
                       "WHERE delivery_id = ?", (*args, now_ms, delivery_id))
        elif isinstance(decision, Retry):
            tx.execute(f"UPDATE webhook_outbox SET {common}, next_attempt_at = ? WHERE delivery_id = ?",
                       (*args, decision.at_ms, delivery_id))
        elif isinstance(decision, GiveUp):
            tx.execute(f"UPDATE webhook_outbox SET {common}, status = 'dead', finished_at = ?, dead_reason_code = ?, "
                       "dead_reason = ?, dead_letter_published = 0 WHERE delivery_id = ?",
                       (*args, now_ms, decision.reason_code, decision.reason, delivery_id))
        else:
            raise TypeError(f"delivery {delivery_id}: unknown decision {decision!r}")

    @staticmethod
    def _disable(tx: Tx, sub: Subscription, reason: str, now_ms: int) -> int:
        """Disable ``sub`` with a pending notice; its pending deliveries become dead letters."""
        tx.execute("UPDATE webhook_subscriptions SET state = 'disabled', disabled_reason = ?, disabled_at = ?, "
                   "disabled_count = disabled_count + 1, notice = 'open_pending', updated_at = ? WHERE id = ?",
                   (reason, now_ms, now_ms, sub.id))
        tx.execute("UPDATE webhook_outbox SET status = 'dead', finished_at = ?, lease_until = NULL, "
                   "dead_reason_code = 'SUBSCRIPTION_DISABLED', dead_reason = ?, dead_letter_published = 0 "
                   "WHERE subscription_id = ? AND status = 'pending'",
                   (now_ms, f"subscription {sub.id} was disabled: {reason}", sub.id))
        return max(tx.rowcount, 0)

    # ------------------------------------------------------------------ what goes to Kafka afterwards
    def unpublished_dead_letters(self, limit: int = 500) -> list[dict[str, Any]]:
        """Dead rows whose Kafka record is not out yet, oldest first, with the subscription's URL."""
        with self.db.transaction() as tx:
            return tx.execute(
                f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY_COLUMNS.split(','))}, d.body, "
                "COALESCE(s.url, '') AS url FROM webhook_outbox d LEFT JOIN webhook_subscriptions s "
                "ON s.id = d.subscription_id WHERE d.status = 'dead' AND d.dead_letter_published = 0 "
                "ORDER BY d.seq LIMIT ?", (limit,))

    def mark_dead_letters_published(self, delivery_ids: Iterable[str]) -> None:
        with self.db.transaction(write=True) as tx:
            for did in delivery_ids:
                tx.execute("UPDATE webhook_outbox SET dead_letter_published = 1 WHERE delivery_id = ?", (did,))

    def pending_notices(self) -> list[Subscription]:
        with self.db.transaction() as tx:
            rows = tx.execute(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions "
                              "WHERE notice IN ('open_pending', 'resolve_pending') ORDER BY updated_at, id")
        return [_subscription(r) for r in rows]

    def mark_notice(self, sub_id: str, was: str, now: str | None) -> None:
        """The notice went out: ``was`` -> ``now`` (unless it changed meanwhile)."""
        with self.db.transaction(write=True) as tx:
            tx.execute("UPDATE webhook_subscriptions SET notice = ? WHERE id = ? AND notice = ?", (now, sub_id, was))

    # ------------------------------------------------------------------ reading (API, main job)
    def deliveries(self, sub_id: str, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """A subscription's deliveries, newest first (``status``: pending, delivered or dead)."""
        with self.db.transaction() as tx:
            if status is None:
                return tx.execute(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE subscription_id = ? "
                                  "ORDER BY seq DESC LIMIT ?", (sub_id, limit))
            return tx.execute(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE subscription_id = ? "
                              "AND status = ? ORDER BY seq DESC LIMIT ?", (sub_id, status, limit))

    def counts(self) -> dict[str, int]:
        """Subscriptions by state and deliveries by status (``subscriptions.active``, ``deliveries.dead``, ...)."""
        with self.db.transaction() as tx:
            subs = tx.execute("SELECT state AS k, COUNT(*) AS n FROM webhook_subscriptions GROUP BY state")
            outbox = tx.execute("SELECT status AS k, COUNT(*) AS n FROM webhook_outbox GROUP BY status")
        return {**{f"subscriptions.{r['k']}": int(r["n"]) for r in subs},
                **{f"deliveries.{r['k']}": int(r["n"]) for r in outbox}}

    def purge_delivered(self, before_ms: int) -> int:
        """Forget delivered rows finished before ``before_ms`` (dead ones stay for the API)."""
        with self.db.transaction(write=True) as tx:
            tx.execute("DELETE FROM webhook_outbox WHERE status = 'delivered' AND finished_at < ?", (before_ms,))
            return max(tx.rowcount, 0)
