"""``settings.eventstore_url`` -> the eventsourcing library's configuration. Pure.

=====================================  =========================================
URL                                    persistence
=====================================  =========================================
``sqlite:///relative/path.sqlite``     SQLite file (``sqlite:////abs/path`` for
                                       an absolute path), WAL journal, waits up
                                       to ``lock_timeout`` s for the write lock
``postgresql://user:pw@host:5432/db``  PostgreSQL (``pip install
``?schema=kuailv&lock_timeout=10``     'kuailv-pipeline[postgres]'``)
``memory://``                          in-process only (eventsourcing.popo)
=====================================  =========================================

SQLite is safe for several processes on one machine: the library switches a
file database to WAL mode (readers never block the writer) and every write
transaction starts with its write, so the lock timeout (sqlite3 busy timeout)
makes concurrent writers wait instead of failing with "database is locked".
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_LOCK_TIMEOUT_S = 10

# URL query parameter -> eventsourcing.postgres setting.
_POSTGRES_OPTIONS = {
    "schema": "POSTGRES_SCHEMA",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "idle_in_transaction_session_timeout": "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
    "pre_ping": "POSTGRES_PRE_PING",
}


class EventStoreConfigError(ValueError):
    pass


def eventstore_env(url: str) -> dict[str, str]:
    """The env dict to pass to ``Application(env=...)`` for an event-store URL."""
    if url == "memory://":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if url.startswith("sqlite:///"):
        return _sqlite(url)
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise EventStoreConfigError(
        f"event store URL {_redacted(url)!r}: expected sqlite:///path, postgresql://user:password@host:port/db "
        "or memory://"
    )


def sqlite_path(env: dict[str, str]) -> Path | None:
    """The SQLite file an env dict points at (None for other stores)."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.sqlite":
        return None
    return Path(env["SQLITE_DBNAME"])


def _sqlite(url: str) -> dict[str, str]:
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    if not path or ":memory:" in path or "mode=memory" in query:
        raise EventStoreConfigError(f"event store URL {url!r}: give a file path (use memory:// for in-process tests)")
    options = dict(parse_qsl(query, strict_parsing=bool(query)))
    unknown = set(options) - {"lock_timeout"}
    if unknown:
        raise EventStoreConfigError(f"event store URL {url!r}: unknown option(s) {sorted(unknown)}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": unquote(path),
        "SQLITE_LOCK_TIMEOUT": options.get("lock_timeout", str(DEFAULT_LOCK_TIMEOUT_S)),
    }


def _postgres(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise EventStoreConfigError(f"event store URL {_redacted(url)!r}: missing database name (…/dbname)")
    if not parts.username:
        raise EventStoreConfigError(f"event store URL {_redacted(url)!r}: missing user (postgresql://user:password@host/db)")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise EventStoreConfigError(f"event store URL {_redacted(url)!r}: {exc}") from None
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": unquote(parts.hostname or "localhost"),
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_LOCK_TIMEOUT": str(DEFAULT_LOCK_TIMEOUT_S),
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        setting = _POSTGRES_OPTIONS.get(key)
        if setting is None:
            raise EventStoreConfigError(
                f"event store URL {_redacted(url)!r}: unknown option {key!r} (known: {sorted(_POSTGRES_OPTIONS)})"
            )
        env[setting] = value
    return env


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
