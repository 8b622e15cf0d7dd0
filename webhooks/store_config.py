"""``KUAILV_WEBHOOK_STORE`` -> where the subscriptions and the delivery outbox live. Pure.

The URL forms are the event store's (``commands.eventstore_config``), parsed by the same code, so one
PostgreSQL URL can serve both:

==========================================  =============================================================
``sqlite:///relative/path.sqlite``          SQLite file (``sqlite:////abs/path``), WAL journal, writers wait
``?lock_timeout=10``                        up to ``lock_timeout`` s for the write lock (default 10)
``postgresql://user:pw@host:5432/db``       PostgreSQL (psycopg 3); ``?schema=`` puts the tables in that
``?schema=kuailv&connect_timeout=5``        schema, ``lock_timeout`` bounds lock waits (s)
``memory://``                               one process only (tests)
==========================================  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from commands.eventstore_config import DEFAULT_LOCK_TIMEOUT_S, EventStoreConfigError, eventstore_env


class WebhookStoreConfigError(EventStoreConfigError):
    pass


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    path: Path | None  # None: in memory
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    schema: str | None = None
    connect_timeout_s: int = 5
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    def describe(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}" + (
            f"?schema={self.schema}" if self.schema else "")


StoreTarget = SqliteTarget | PostgresTarget


def store_target(url: str) -> StoreTarget:
    """The store a ``KUAILV_WEBHOOK_STORE`` URL names; the error names the URL (without its password)."""
    return sql_store_target(url, "KUAILV_WEBHOOK_STORE", WebhookStoreConfigError)


def sql_store_target(url: str, setting: str, error: type[Exception]) -> StoreTarget:
    """The database a store URL names, parsed like the event store's (``commands.eventstore_config``): shared by
    the webhook and audit stores; a bad URL raises ``error`` naming ``setting`` and the URL without password."""
    try:
        env = eventstore_env(url)
    except EventStoreConfigError as exc:
        raise error(f"{setting}: {exc}".replace("event store URL", "URL")) from None
    module = env["PERSISTENCE_MODULE"]
    if module == "eventsourcing.popo":
        return SqliteTarget(None)
    if module == "eventsourcing.sqlite":
        return SqliteTarget(Path(env["SQLITE_DBNAME"]), float(env["SQLITE_LOCK_TIMEOUT"]))
    return PostgresTarget(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                          user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"],
                          schema=env.get("POSTGRES_SCHEMA") or None,
                          connect_timeout_s=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
                          lock_timeout_s=float(env["POSTGRES_LOCK_TIMEOUT"]))
