"""The audit store: append-only chains in SQLite (default) or PostgreSQL (``KUAILV_AUDIT_STORE``).

URLs are the event store's (``commands.eventstore_config``): ``sqlite:///path`` (``sqlite:////abs``),
``postgresql://user:pw@host:port/db?schema=...&lock_timeout=...``, ``memory://`` (one process, tests).
The SQL plumbing (one connection and lock per store, ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE`` on
PostgreSQL) is the webhook store's (``webhooks.sql``); its errors are re-raised as ours.

Tables (created on open, idempotently):

- ``audit_entries``: one row per entry, primary key ``(chain, seq)``; ``(chain, ref)`` is unique, so a
  record consumed again (after a crash, a rebalance) is never appended twice. Triggers refuse UPDATE,
  DELETE (and on PostgreSQL TRUNCATE): a mistake or a casual edit fails; someone who can drop the
  triggers (the file's owner, a superuser) is what the hash chain is for.
- ``audit_heads``: each chain's last (seq, hash). An append locks its chain's head row for the
  transaction (PostgreSQL ``FOR UPDATE``; SQLite's write lock covers the file), so concurrent appenders
  to one chain queue up instead of forking it. ``verify`` also uses the head row as an anchor: rows
  removed from the end of a chain show up as ``truncated``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from audit.chain import PLAIN, Actor, Anchor, Draft, Entry, Head, Keys, Position, Verdict, append, verify
from streams.sinks.errors import SinkError
from webhooks import sql
from webhooks.store_config import StoreTarget, sql_store_target

_COLUMNS = ("chain, seq, prev_hash, hash, kind, subject, at_ms, actor_user, actor_role, source_topic, "
            "source_partition, source_offset, ref, payload, payload_sha256, key_id")
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_entries (
        chain TEXT NOT NULL, seq BIGINT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
        kind TEXT NOT NULL, subject TEXT, at_ms BIGINT, actor_user TEXT, actor_role TEXT,
        source_topic TEXT, source_partition INTEGER, source_offset BIGINT, ref TEXT,
        payload TEXT NOT NULL, payload_sha256 TEXT NOT NULL, key_id TEXT NOT NULL,
        PRIMARY KEY (chain, seq))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_entries_ref ON audit_entries (chain, ref)",
    "CREATE INDEX IF NOT EXISTS audit_entries_subject ON audit_entries (subject)",
    "CREATE TABLE IF NOT EXISTS audit_heads (chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
)
APPEND_ONLY = {
    "sqlite": tuple(
        f"""CREATE TRIGGER IF NOT EXISTS audit_entries_no_{op.lower()} BEFORE {op} ON audit_entries
            BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: {op} refused'); END"""
        for op in ("UPDATE", "DELETE")),
    "postgresql": (
        "SELECT pg_advisory_xact_lock(hashtext('kuailv audit schema'))",  # concurrent openers: one at a time
        # no percent sign: psycopg would read it as a placeholder
        """CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS
           'BEGIN RAISE EXCEPTION USING MESSAGE = ''audit_entries is append-only: '' || TG_OP || '' refused''; END'""",
        """CREATE OR REPLACE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
           ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()"""),
}
PAGE = 1000
_IN_CHUNK = 500


class AuditStoreError(Exception):
    """The audit store refused a statement, or its chains are inconsistent (the message says which)."""


class AuditStoreUnavailable(SinkError):
    """The audit store could not be reached or stayed locked; the worker retries."""


@dataclass(frozen=True, slots=True)
class Appended:
    entries: list[Entry]  # appended now, in order
    skipped: int  # drafts whose ref the chain already held


def audit_target(url: str) -> StoreTarget:
    """The database a ``KUAILV_AUDIT_STORE`` URL names; errors name the URL without its password."""
    return sql_store_target(url, "KUAILV_AUDIT_STORE", AuditStoreError)


class AuditStore:
    def __init__(self, db: sql.Database, keys: Keys = PLAIN) -> None:
        self.db = db
        self.keys = keys
        self.describe = db.describe
        with self._tx(write=True) as tx:
            for statement in (*SCHEMA, *APPEND_ONLY[db.dialect]):
                tx.execute(statement)

    @classmethod
    def from_url(cls, url: str, keys: Keys = PLAIN) -> AuditStore:
        return cls(sql.open_database(audit_target(url)), keys)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sql.Tx]:
        try:
            with self.db.transaction(write=write) as tx:
                yield tx
        except sql.StoreUnavailable as exc:
            raise AuditStoreUnavailable(f"audit store {self.describe}: {exc.__cause__ or exc}") from exc
        except sql.StoreError as exc:
            raise AuditStoreError(f"audit store {self.describe}: {exc.__cause__ or exc}") from exc

    # --- writing -------------------------------------------------------------------------------------
    def append(self, drafts: Sequence[Draft]) -> Appended:
        """Append drafts to their chains in one transaction, in order; a draft whose ref its chain
        already holds is skipped. Chains are locked in name order (no deadlock between batches)."""
        by_chain: dict[str, list[Draft]] = defaultdict(list)
        for d in drafts:
            by_chain[d.chain].append(d)
        out: list[Entry] = []
        skipped = 0
        with self._tx(write=True) as tx:
            for chain in sorted(by_chain):
                head = self._lock_head(tx, chain)
                known = self._known_refs(tx, chain, [d.ref for d in by_chain[chain] if d.ref is not None])
                for d in by_chain[chain]:
                    if d.ref is not None and d.ref in known:
                        skipped += 1
                        continue
                    entry = append(head, d, self.keys)
                    tx.execute(f"INSERT INTO audit_entries ({_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                               _row(entry))
                    head = Head(chain, entry.seq, entry.hash)
                    if d.ref is not None:
                        known.add(d.ref)
                    out.append(entry)
                tx.execute("UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?", (head.seq, head.hash, chain))
        return Appended(out, skipped)

    def _lock_head(self, tx: sql.Tx, chain: str) -> Head:
        empty = Head.empty(chain)
        tx.execute("INSERT INTO audit_heads (chain, seq, hash) VALUES (?, 0, ?) ON CONFLICT (chain) DO NOTHING",
                   (chain, empty.hash))
        if tx.rowcount == 1:  # a new chain: it must not have entries already (a deleted head row)
            rows = tx.execute("SELECT MAX(seq) AS seq FROM audit_entries WHERE chain = ?", (chain,))
            if rows[0]["seq"] is not None:
                raise AuditStoreError(f"audit store {self.describe}: chain {chain!r} has entries up to seq "
                                      f"{rows[0]['seq']} but no head row; refusing to start it again")
            return empty
        row = tx.execute(f"SELECT seq, hash FROM audit_heads WHERE chain = ?{tx.for_update}", (chain,))[0]
        return Head(chain, int(row["seq"]), row["hash"])

    def _known_refs(self, tx: sql.Tx, chain: str, refs: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(refs), _IN_CHUNK):
            chunk = refs[i:i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = tx.execute(f"SELECT ref FROM audit_entries WHERE chain = ? AND ref IN ({marks})", (chain, *chunk))
            known.update(r["ref"] for r in rows)
        return known

    # --- reading -------------------------------------------------------------------------------------
    def entries(self, chain: str, after_seq: int = 0) -> Iterator[Entry]:
        """A chain in seq order, read a page at a time (each page its own short transaction)."""
        while True:
            with self._tx() as tx:
                rows = tx.execute(f"SELECT {_COLUMNS} FROM audit_entries WHERE chain = ? AND seq > ? "
                                  "ORDER BY seq LIMIT ?", (chain, after_seq, PAGE))
            for row in rows:
                yield _entry(row)
            if len(rows) < PAGE:
                return
            after_seq = int(rows[-1]["seq"])

    def by_subject(self, subject: str, chain: str | None = None) -> list[Entry]:
        where, params = ("subject = ? AND chain = ?", (subject, chain)) if chain else ("subject = ?", (subject,))
        with self._tx() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM audit_entries WHERE {where} ORDER BY chain, seq", params)
        return [_entry(r) for r in rows]

    def heads(self) -> list[Head]:
        """Every chain's head row, by chain name."""
        with self._tx() as tx:
            rows = tx.execute("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
        return [Head(r["chain"], int(r["seq"]), r["hash"]) for r in rows]

    def chains(self) -> list[str]:
        """Every chain with a head row or an entry (a chain whose head row was deleted still counts)."""
        with self._tx() as tx:
            rows = tx.execute("SELECT chain FROM audit_heads UNION SELECT DISTINCT chain FROM audit_entries")
        return sorted(r["chain"] for r in rows)

    def verify(self, chain: str, anchors: Sequence[Anchor] = ()) -> Verdict:
        """Check a whole chain against its hashes, its head row and ``anchors`` (kept elsewhere)."""
        head = next((h for h in self.heads() if h.chain == chain), None)  # read before the entries
        if head is not None and head.seq > 0:
            anchors = (*anchors, Anchor(head.seq, head.hash, "the store's head row"))
        return verify(chain, self.entries(chain), self.keys, anchors)


def _row(e: Entry) -> tuple[Any, ...]:
    return (e.chain, e.seq, e.prev_hash, e.hash, e.kind, e.subject, e.at_ms,
            e.actor.user if e.actor else None, e.actor.role if e.actor else None,
            e.source.topic if e.source else None, e.source.partition if e.source else None,
            e.source.offset if e.source else None, e.ref, e.payload.decode("utf-8"), e.payload_sha256, e.key_id)


def _entry(r: dict[str, Any]) -> Entry:
    payload = r["payload"]
    actor = Actor(r["actor_user"], r["actor_role"]) if r["actor_user"] is not None else None
    source = (Position(r["source_topic"], int(r["source_partition"]), int(r["source_offset"]))
              if r["source_topic"] is not None else None)
    return Entry(r["chain"], int(r["seq"]), r["prev_hash"], r["kind"], r["subject"],
                 None if r["at_ms"] is None else int(r["at_ms"]), actor, source, r["ref"],
                 payload.encode("utf-8") if isinstance(payload, str) else bytes(payload), r["payload_sha256"],
                 r["key_id"], r["hash"])
