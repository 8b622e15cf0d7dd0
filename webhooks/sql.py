"""The two SQL databases the webhook store runs on, behind one small interface: SQLite (stdlib ``sqlite3``)
and PostgreSQL (psycopg 3). Connections open in ``open_database``, never at import.

Queries are written once with ``?`` placeholders (rewritten to ``%s`` for psycopg) in the SQL both
databases share: ``INSERT ... ON CONFLICT DO NOTHING``, ``NOT EXISTS``, ``RETURNING``. One connection per
process, one transaction at a time (a lock): the store's statements are short, and SQLite serialises
writers anyway. Write transactions on SQLite start with ``BEGIN IMMEDIATE`` (the write lock first, so two
processes wait for each other instead of failing with "database is locked"); on PostgreSQL the rows a
transaction will update are locked with ``FOR UPDATE`` (``Tx.for_update``).

Errors: a database that cannot be reached or is locked too long is ``StoreUnavailable`` (a ``SinkError``:
the worker retries); any other failure is ``StoreError``. Both name the store and the statement.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from streams.sinks.errors import SinkError
from webhooks.store_config import PostgresTarget, SqliteTarget, StoreTarget


class StoreError(Exception):
    """The webhook store refused a statement (a bug or a schema problem)."""


class StoreUnavailable(SinkError):
    """The webhook store could not be reached or stayed locked; retry later."""


class Tx:
    """One transaction: ``execute`` returns the rows as dicts (empty for statements without rows)."""

    def __init__(self, cursor: Any, dialect: str, where: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self.where = where
        self.rowcount = 0

    @property
    def for_update(self) -> str:
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        self._cur.execute(sql, tuple(params))
        self.rowcount = self._cur.rowcount
        if self._cur.description is None:
            return []
        names = [d[0] for d in self._cur.description]
        return [dict(zip(names, row, strict=True)) for row in self._cur.fetchall()]


class Database:
    """One connection and a lock; ``transaction()`` yields a ``Tx``."""

    dialect = ""
    serial = ""  # the DDL of an auto-numbered primary key column

    def __init__(self, describe: str) -> None:
        self.describe = describe
        self._lock = threading.RLock()

    def transaction(self, write: bool = False) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteDatabase(Database):
    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, target: SqliteTarget) -> None:
        super().__init__(f"sqlite:///{target.path}" if target.path else "memory://")
        if target.path is not None:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(target.path) if target.path else ":memory:", timeout=target.lock_timeout_s,
                                     isolation_level=None, check_same_thread=False)
        if target.path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL" if target.path else "PRAGMA synchronous=OFF")

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield Tx(cur, self.dialect, self.describe)
                cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback(cur)
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreUnavailable(f"webhook store {self.describe}: {exc}") from exc
                raise StoreError(f"webhook store {self.describe}: {exc}") from exc
            except sqlite3.Error as exc:
                self._rollback(cur)
                raise StoreError(f"webhook store {self.describe}: {exc}") from exc
            except BaseException:
                self._rollback(cur)
                raise
            finally:
                cur.close()

    def _rollback(self, cur: Any) -> None:
        if self._conn.in_transaction:
            cur.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDatabase(Database):
    dialect = "postgresql"
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, target: PostgresTarget) -> None:
        super().__init__(target.describe())
        self.target = target
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        t = self.target
        options = f"-c lock_timeout={round(t.lock_timeout_s * 1000)}"
        if t.schema:
            options += f" -c search_path={t.schema}"
        conn = psycopg.connect(host=t.host, port=t.port, dbname=t.dbname, user=t.user, password=t.password or None,
                               connect_timeout=t.connect_timeout_s, autocommit=True, options=options)
        if t.schema:
            from psycopg import sql

            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(t.schema)))
        return conn

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield Tx(cur, self.dialect, self.describe)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop()
                raise StoreUnavailable(f"webhook store {self.describe}: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"webhook store {self.describe}: {exc}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def open_database(target: StoreTarget) -> Database:
    if isinstance(target, SqliteTarget):
        return SqliteDatabase(target)
    return PostgresDatabase(target)
