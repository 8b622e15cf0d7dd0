"""Per-data-subject keys: the ``KeyStore`` protocol, a SQLite store, a TTL cache for workers.

A data subject is a person whose personal data we hold: ``customer:<customer_id>`` (the
restaurant's contact, the delivery address, whoever signed) or ``driver:<driver_id>``. Each has
its own 256-bit keys, one per version; ``privacy.sealed`` seals values under the newest.
Destroying a subject's keys makes every value sealed under them unreadable, in every copy of the
log, for good: erasure by crypto-shredding.

``SqliteKeyStore`` (``sqlite:///path``) is the single-machine store (``memory://``: the same
store in this process's memory, for tests and throwaway runs). Its rows hold the keys
**wrapped** (AES-256-GCM, authenticated with the subject and version) under a master key from
configuration (``KUAILV_MASTER_KEY``, base64 of 32 bytes), so the file alone opens nothing.
Unset, a fixed development master key is used: anyone with this repository can unwrap such a
store; never use it with real data (``keystore_from_settings`` logs a warning). ``destroy``
deletes the wrapped key rows (``secure_delete`` overwrites them in the file, the WAL is
checkpointed and truncated) and keeps a tombstone ``(subject, destroyed_at)`` so ``erased``
can answer. Several processes may share the file: WAL journal, busy timeout, and every write in
a ``BEGIN IMMEDIATE`` transaction.

**A KMS or Vault in production** implements the same five methods (envelope encryption: the
KMS generates and unwraps data keys, the wrapped data keys live where this file's rows live,
``destroy`` deletes them or schedules the KMS key's deletion) and registers a URL scheme in
``KEYSTORE_SCHEMES``; ``KUAILV_KEYSTORE=<scheme>://...`` then selects it. docs/privacy.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, unquote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

SUBJECT_KINDS = ("customer", "driver")
KEY_BYTES = 32
# The local development master key: fixed and public (it is in this file). Unset KUAILV_MASTER_KEY means
# this one; never for real data.
DEV_MASTER_KEY = hashlib.sha256(b"kuailv-local-development-master-key-not-for-production").digest()
_WRAP_DOMAIN = "kuailv.keywrap/v1"


class KeyErased(LookupError):
    """The subject's keys were destroyed (erasure): what they sealed can never be opened again."""


class UnknownKey(LookupError):
    """No such key version for a subject that was never erased: a corrupt or foreign sealed value."""


class KeyStoreError(RuntimeError):
    """The store cannot serve keys: bad configuration, or a wrapped key that does not unwrap."""


class KeyStore(Protocol):
    def current(self, subject: str) -> tuple[int, bytes]:
        """(version, key) to seal with; creates the subject's first key on first use.
        ``KeyErased`` if the subject was erased."""
        ...

    def key(self, subject: str, version: int) -> bytes:
        """The key of one version, to open a value; ``KeyErased`` after ``destroy``."""
        ...

    def destroy(self, subject: str) -> int:
        """Destroy every key of the subject; returns how many versions were destroyed (0 the second time)."""
        ...

    def erased(self, subject: str) -> bool:
        """Were the subject's keys destroyed?"""
        ...

    def rotate(self, subject: str) -> int:
        """Start a new key version for new values (old versions still open old values); returns it."""
        ...


def subject_id(kind: str, ident: str) -> str:
    """``customer:CUST-A`` from ``("customer", "CUST-A")``."""
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"unknown data subject kind {kind!r}; known: {', '.join(SUBJECT_KINDS)}")
    if type(ident) is not str or not ident:
        raise ValueError(f"a {kind} subject needs a non-empty id, got {ident!r}")
    return f"{kind}:{ident}"


def check_subject(subject: str) -> str:
    kind, sep, ident = subject.partition(":") if type(subject) is str else ("", "", "")
    if not sep or kind not in SUBJECT_KINDS or not ident:
        raise ValueError(f"data subject {subject!r} is not <kind>:<id> with kind in {', '.join(SUBJECT_KINDS)}")
    return subject


# --- the master key ---------------------------------------------------------------------------

def master_key_of(configured: str) -> bytes:
    """The master key from ``KUAILV_MASTER_KEY`` (base64 of 32 bytes); the development key when empty.
    Errors never include the configured value."""
    if not configured:
        return DEV_MASTER_KEY
    try:
        key = base64.b64decode(configured.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError("KUAILV_MASTER_KEY is not base64 (expected base64 of 32 random bytes, e.g. `python -c "
                            "'import os,base64; print(base64.b64encode(os.urandom(32)).decode())'`)") from None
    if len(key) != KEY_BYTES:
        raise KeyStoreError(f"KUAILV_MASTER_KEY decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return key


def _wrap_aad(subject: str, version: int) -> bytes:
    return json.dumps([_WRAP_DOMAIN, subject, version], ensure_ascii=False, separators=(",", ":")).encode()


# --- SQLite --------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    wrapped    BLOB    NOT NULL,  -- nonce (12 bytes) + AES-256-GCM(master key, key, aad = subject + version)
    created_at INTEGER NOT NULL,  -- epoch ms
    PRIMARY KEY (subject, version)
);
CREATE TABLE IF NOT EXISTS erased_subjects (
    subject      TEXT    PRIMARY KEY,
    destroyed_at INTEGER NOT NULL,  -- epoch ms
    versions     INTEGER NOT NULL   -- key versions destroyed
);
"""


def sqlite_keystore_path(url: str) -> tuple[Path, float]:
    """``sqlite:///relative.sqlite`` or ``sqlite:////abs/path.sqlite`` (``?busy_timeout=10``) -> (path, seconds)."""
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    if not url.startswith("sqlite:///") or not path or ":memory:" in path:
        raise KeyStoreError(f"key store URL {url!r}: expected sqlite:///path/keys.sqlite")
    options = dict(parse_qsl(query))
    unknown = set(options) - {"busy_timeout"}
    if unknown:
        raise KeyStoreError(f"key store URL {url!r}: unknown option(s) {sorted(unknown)} (known: busy_timeout)")
    return Path(unquote(path)), float(options.get("busy_timeout", "10"))


class SqliteKeyStore:
    """Wrapped per-subject keys in one SQLite file; a connection per thread, opened on first use.
    ``path=None``: in this process's memory (one connection, serialised by a lock)."""

    def __init__(self, path: str | Path | None, master_key: bytes, *, busy_timeout_s: float = 10.0,
                 wall_clock: Callable[[], float] = time.time,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if len(master_key) != KEY_BYTES:
            raise KeyStoreError(f"the master key must be {KEY_BYTES} bytes, got {len(master_key)}")
        self.path = None if path is None else Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._master = AESGCM(master_key)
        self._wall_clock = wall_clock
        self._random = random_bytes
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None  # in memory: the one connection
        self._guard: AbstractContextManager[object] = threading.RLock() if path is None else nullcontext()

    def __repr__(self) -> str:  # never the master key
        return f"SqliteKeyStore({str(self.path or ':memory:')!r})"

    @classmethod
    def from_url(cls, url: str, master_key: bytes) -> SqliteKeyStore:
        if url == "memory://":
            return cls(None, master_key)
        path, busy = sqlite_keystore_path(url)
        return cls(path, master_key, busy_timeout_s=busy)

    # --- the protocol

    def current(self, subject: str) -> tuple[int, bytes]:
        check_subject(subject)
        with self._guard:
            row = self._newest(self._conn(), subject)
            if row is None:
                with self._write() as db:
                    if self._tombstone(db, subject):
                        raise KeyErased(f"keys of {subject} were destroyed (erasure): nothing new is sealed for it")
                    row = self._newest(db, subject)
                    if row is None:
                        row = (1, self._insert(db, subject, 1))
        version, wrapped = row
        return version, self._unwrap(subject, version, wrapped)

    def key(self, subject: str, version: int) -> bytes:
        check_subject(subject)
        with self._guard:
            db = self._conn()
            row = db.execute("SELECT wrapped FROM subject_keys WHERE subject = ? AND version = ?",
                             (subject, version)).fetchone()
            if row is None:
                if self._tombstone(db, subject):
                    raise KeyErased(f"key {subject} v{version} was destroyed (erasure)")
                raise UnknownKey(f"no key {subject} v{version} in the key store {self!r}")
        return self._unwrap(subject, version, bytes(row[0]))

    def destroy(self, subject: str) -> int:
        check_subject(subject)
        with self._guard:
            with self._write() as db:
                destroyed = db.execute("DELETE FROM subject_keys WHERE subject = ?", (subject,)).rowcount
                db.execute("INSERT OR IGNORE INTO erased_subjects (subject, destroyed_at, versions) VALUES (?, ?, ?)",
                           (subject, self._now_ms(), destroyed))
            self._checkpoint()
        return destroyed

    def erased(self, subject: str) -> bool:
        check_subject(subject)
        with self._guard:
            return self._tombstone(self._conn(), subject)

    def rotate(self, subject: str) -> int:
        check_subject(subject)
        with self._guard, self._write() as db:
            if self._tombstone(db, subject):
                raise KeyErased(f"keys of {subject} were destroyed (erasure): no new version")
            row = self._newest(db, subject)
            version = 1 if row is None else row[0] + 1
            self._insert(db, subject, version)
        return version

    def close(self) -> None:
        """Close this thread's connection (others close with their threads). In memory: nothing; the keys live
        as long as this object."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- storage

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if self.path is None:
            if self._shared is None:
                self._shared = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                self._shared.executescript(_SCHEMA)
            return self._shared
        self._local.db = db = self._open(self.path)
        return db

    def _open(self, path: Path) -> sqlite3.Connection:
        """A connection with WAL, secure_delete and the tables. Switching a new file to WAL fails at once
        with "database is locked" while another process does the same (no busy handler for it): retry
        until the busy timeout."""
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            db = sqlite3.connect(path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA secure_delete=ON")  # a deleted key row is overwritten, not just unlinked
                db.executescript(_SCHEMA)
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise KeyStoreError(f"key store {path}: {exc}") from exc
                time.sleep(0.02)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")  # take the write lock first: concurrent writers wait (busy timeout)
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _checkpoint(self) -> None:
        """Move the WAL into the file and truncate it, so destroyed rows leave no copy in the WAL.
        Best effort: a reader in another process can keep some frames alive until its next checkpoint."""
        if self.path is None:
            return
        busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.info("key store %s: WAL checkpoint after a destroy was blocked by a reader; the next one runs it",
                     self.path)

    @staticmethod
    def _newest(db: sqlite3.Connection, subject: str) -> tuple[int, bytes] | None:
        row = db.execute("SELECT version, wrapped FROM subject_keys WHERE subject = ? ORDER BY version DESC LIMIT 1",
                         (subject,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    @staticmethod
    def _tombstone(db: sqlite3.Connection, subject: str) -> bool:
        return db.execute("SELECT 1 FROM erased_subjects WHERE subject = ?", (subject,)).fetchone() is not None

    def _insert(self, db: sqlite3.Connection, subject: str, version: int) -> bytes:
        nonce = self._random(12)
        wrapped = nonce + self._master.encrypt(nonce, self._random(KEY_BYTES), _wrap_aad(subject, version))
        db.execute("INSERT INTO subject_keys (subject, version, wrapped, created_at) VALUES (?, ?, ?, ?)",
                   (subject, version, wrapped, self._now_ms()))
        return wrapped

    def _unwrap(self, subject: str, version: int, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:12], wrapped[12:], _wrap_aad(subject, version))
        except InvalidTag:
            raise KeyStoreError(f"key {subject} v{version} in {self!r} does not unwrap: the master key "
                                "(KUAILV_MASTER_KEY) is not the one it was wrapped with, or the row was altered"
                                ) from None

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)


# --- a bounded TTL cache for workers -----------------------------------------------------------------

class CachedKeyStore:
    """Keys kept in memory for at most ``ttl_s`` seconds, at most ``max_entries`` of them (least recently
    used goes first). A destroy or rotate through this object drops the subject's entries at once; one made
    elsewhere (another process) is seen within ``ttl_s``: the bound on how long a worker may still seal with
    or open a destroyed key. ``erased`` is never cached."""

    def __init__(self, inner: KeyStore, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 10_000) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError(f"ttl_s must be >= 0 and max_entries >= 1, got {ttl_s}, {max_entries}")
        self.inner = inner
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int | None], tuple[float, tuple[int, bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachedKeyStore({self.inner!r}, ttl_s={self.ttl_s})"

    def current(self, subject: str) -> tuple[int, bytes]:
        hit = self._get((subject, None))
        if hit is not None:
            return hit
        version, key = self.inner.current(subject)
        self._put((subject, None), (version, key))
        self._put((subject, version), (version, key))
        return version, key

    def key(self, subject: str, version: int) -> bytes:
        hit = self._get((subject, version))
        if hit is not None:
            return hit[1]
        key = self.inner.key(subject, version)
        self._put((subject, version), (version, key))
        return key

    def destroy(self, subject: str) -> int:
        self.invalidate(subject)
        try:
            return self.inner.destroy(subject)
        finally:
            self.invalidate(subject)

    def erased(self, subject: str) -> bool:
        return self.inner.erased(subject)

    def rotate(self, subject: str) -> int:
        version = self.inner.rotate(subject)
        self.invalidate(subject)
        return version

    def invalidate(self, subject: str) -> None:
        """Forget every cached key of ``subject`` (call it when told of a destroy or rotate elsewhere)."""
        with self._lock:
            for k in [k for k in self._entries if k[0] == subject]:
                del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, k: tuple[str, int | None]) -> tuple[int, bytes] | None:
        with self._lock:
            entry = self._entries.get(k)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[k]
                return None
            self._entries.move_to_end(k)
            return entry[1]

    def _put(self, k: tuple[str, int | None], value: tuple[int, bytes]) -> None:
        with self._lock:
            self._entries[k] = (self._clock() + self.ttl_s, value)
            self._entries.move_to_end(k)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


# --- from configuration ----------------------------------------------------------------------------

def _sqlite_from_settings(url: str, settings: Settings) -> KeyStore:
    return SqliteKeyStore.from_url(url, master_key_of(settings.master_key))


# URL scheme of KUAILV_KEYSTORE -> constructor. The hook for a KMS or Vault: add its scheme here.
KEYSTORE_SCHEMES: dict[str, Callable[[str, Settings], KeyStore]] = {"sqlite": _sqlite_from_settings,
                                                                    "memory": _sqlite_from_settings}

_warned_dev_key = False


def keystore_from_settings(settings: Settings) -> CachedKeyStore:
    """The configured key store (``KUAILV_KEYSTORE``), behind the TTL cache (``KUAILV_KEYSTORE_CACHE_TTL_S``).
    Opens nothing yet: the first key request does."""
    global _warned_dev_key
    url = settings.keystore_url
    scheme = url.split(":", 1)[0]
    factory = KEYSTORE_SCHEMES.get(scheme)
    if factory is None:
        raise KeyStoreError(f"KUAILV_KEYSTORE {url.split('?', 1)[0]!r}: no key store for scheme {scheme!r} "
                            f"(known: {', '.join(sorted(KEYSTORE_SCHEMES))}); a KMS/Vault plugs in through "
                            "privacy.keystore.KEYSTORE_SCHEMES (docs/privacy.md)")
    if not settings.master_key and scheme == "sqlite" and not _warned_dev_key:  # memory://: nothing outlives us
        _warned_dev_key = True
        log.warning("KUAILV_MASTER_KEY is not set: personal-data keys are wrapped with the fixed local development "
                    "master key, which anyone with this repository has; set it before holding real data")
    return CachedKeyStore(factory(url, settings), settings.keystore_cache_ttl_s)
