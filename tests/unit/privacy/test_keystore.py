"""The key stores on a real SQLite file (and in memory): one contract for both; destroy really deletes;
keys are wrapped under the master key; several threads and processes agree on a subject's key."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import settings as settings_mod
from privacy.keystore import (
    DEV_MASTER_KEY,
    CachedKeyStore,
    KeyErased,
    KeyStoreError,
    SqliteKeyStore,
    UnknownKey,
    keystore_from_settings,
    master_key_of,
    subject_id,
)

ROOT = Path(__file__).resolve().parents[3]
MASTER = bytes(range(100, 132))


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteKeyStore]:
    s = SqliteKeyStore(tmp_path / "keys.sqlite" if request.param == "file" else None, MASTER)
    yield s
    s.close()


# --- the contract, for every store ------------------------------------------------------------------

def test_the_first_use_creates_version_one_and_it_stays(store: SqliteKeyStore) -> None:
    version, key = store.current("customer:CUST-A")
    assert version == 1 and len(key) == 32
    assert store.current("customer:CUST-A") == (1, key)
    assert store.key("customer:CUST-A", 1) == key
    assert store.current("customer:CUST-B")[1] != key  # one key per subject
    assert store.current("driver:CUST-A")[1] != key  # a driver and a customer with the same id are two subjects


def test_rotate_adds_a_version_and_old_versions_still_open(store: SqliteKeyStore) -> None:
    _, first = store.current("customer:CUST-A")
    assert store.rotate("customer:CUST-A") == 2
    version, second = store.current("customer:CUST-A")
    assert version == 2 and second != first
    assert store.key("customer:CUST-A", 1) == first
    assert store.rotate("driver:DRV-7") == 1  # rotating a subject without keys creates its first


def test_destroy_erases_every_version_and_is_idempotent(store: SqliteKeyStore) -> None:
    store.current("customer:CUST-A")
    store.rotate("customer:CUST-A")
    store.current("customer:CUST-B")
    assert not store.erased("customer:CUST-A")
    assert store.destroy("customer:CUST-A") == 2
    assert store.destroy("customer:CUST-A") == 0
    assert store.erased("customer:CUST-A") and not store.erased("customer:CUST-B")
    for version in (1, 2):
        with pytest.raises(KeyErased, match=f"customer:CUST-A v{version}"):
            store.key("customer:CUST-A", version)
    with pytest.raises(KeyErased):
        store.current("customer:CUST-A")  # nothing new is sealed under an erased subject
    with pytest.raises(KeyErased):
        store.rotate("customer:CUST-A")
    assert store.key("customer:CUST-B", 1)
    assert store.destroy("customer:NEVER-SEEN") == 0 and store.erased("customer:NEVER-SEEN")


def test_an_unknown_version_or_a_malformed_subject_is_an_error(store: SqliteKeyStore) -> None:
    store.current("customer:CUST-A")
    with pytest.raises(UnknownKey, match="customer:CUST-A v7"):
        store.key("customer:CUST-A", 7)
    for bad in ("CUST-A", "vendor:X", "customer:"):
        with pytest.raises(ValueError, match="<kind>:<id>"):
            store.current(bad)
    assert subject_id("driver", "DRV-7") == "driver:DRV-7"
    with pytest.raises(ValueError):
        subject_id("customer", "")


# --- the SQLite file --------------------------------------------------------------------------------

def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_keys_are_stored_wrapped_and_a_wrong_master_key_cannot_unwrap(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    _, key = SqliteKeyStore(path, MASTER).current("customer:CUST-A")
    assert key not in _file_bytes(path)  # only the wrapped form is on disk
    assert SqliteKeyStore(path, MASTER).key("customer:CUST-A", 1) == key  # another process, same master key
    with pytest.raises(KeyStoreError, match=r"customer:CUST-A v1 .* does not unwrap: the master key"):
        SqliteKeyStore(path, DEV_MASTER_KEY).key("customer:CUST-A", 1)
    with pytest.raises(KeyStoreError):
        SqliteKeyStore(path, DEV_MASTER_KEY).current("customer:CUST-A")


def test_a_wrapped_key_moved_to_another_subject_does_not_unwrap(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "keys.sqlite"
    store = SqliteKeyStore(path, MASTER)
    store.current("customer:CUST-A")
    store.current("customer:CUST-B")
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE subject_keys SET wrapped = (SELECT wrapped FROM subject_keys WHERE subject = "
                   "'customer:CUST-A') WHERE subject = 'customer:CUST-B'")
    db.close()
    with pytest.raises(KeyStoreError, match="customer:CUST-B v1"):
        SqliteKeyStore(path, MASTER).key("customer:CUST-B", 1)


def test_destroy_removes_the_wrapped_rows_from_the_file_and_keeps_a_tombstone(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "keys.sqlite"
    store = SqliteKeyStore(path, MASTER, wall_clock=lambda: 1_780_000_000.5)
    store.current("customer:CUST-A")
    store.rotate("customer:CUST-A")
    wrapped = [bytes(r[0]) for r in sqlite3.connect(path).execute("SELECT wrapped FROM subject_keys")]
    assert len(wrapped) == 2 and all(w in _file_bytes(path) for w in wrapped)
    assert store.destroy("customer:CUST-A") == 2
    on_disk = _file_bytes(path)
    assert not any(w in on_disk for w in wrapped)  # overwritten (secure_delete), WAL checkpointed
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM subject_keys").fetchone() == (0,)
    assert db.execute("SELECT subject, destroyed_at, versions FROM erased_subjects").fetchall() == [
        ("customer:CUST-A", 1_780_000_000_500, 2)]


def test_threads_creating_one_subject_get_one_key(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.sqlite", MASTER)
    start = threading.Barrier(8)
    got: list[tuple[int, bytes]] = []

    def create() -> None:
        start.wait()
        got.append(store.current("customer:RACE"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


_CHILD = """
import base64, json, sys
from privacy.keystore import SqliteKeyStore
store = SqliteKeyStore(sys.argv[1], base64.b64decode(sys.argv[2]))
print(json.dumps({s: store.current(s)[1].hex() for s in [f"customer:C{i}" for i in range(40)]}))
"""


def test_processes_creating_the_same_subjects_agree(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    args = [sys.executable, "-c", _CHILD, str(path), base64.b64encode(MASTER).decode()]
    children = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
    outputs = [c.communicate(timeout=60) for c in children]
    assert all(c.returncode == 0 for c in children), [err for _, err in outputs]
    first, *others = (json.loads(out) for out, _ in outputs)
    assert all(o == first for o in others) and len(first) == 40
    assert all(SqliteKeyStore(path, MASTER).key(s, 1).hex() == k for s, k in first.items())


# --- configuration ----------------------------------------------------------------------------------

def test_master_key_from_configuration() -> None:
    assert master_key_of("") == DEV_MASTER_KEY
    assert master_key_of(base64.b64encode(MASTER).decode()) == MASTER
    with pytest.raises(KeyStoreError, match="32") as short:
        master_key_of(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(KeyStoreError, match="not base64") as bad:
        master_key_of("not base64 at all!")
    assert "not base64 at all" not in str(bad.value) and "eHh4" not in str(short.value)  # never the value


def test_settings_hide_the_master_key_and_build_the_configured_store(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    secret = base64.b64encode(MASTER).decode()
    monkeypatch.setenv("KUAILV_MASTER_KEY", secret)
    monkeypatch.setenv("KUAILV_KEYSTORE", f"sqlite:///{tmp_path}/k.sqlite?busy_timeout=3")
    monkeypatch.setenv("KUAILV_KEYSTORE_CACHE_TTL_S", "5")
    settings = settings_mod.load("test")
    assert secret not in repr(settings)
    keys = keystore_from_settings(settings)
    assert isinstance(keys, CachedKeyStore) and keys.ttl_s == 5
    assert isinstance(keys.inner, SqliteKeyStore) and keys.inner.busy_timeout_s == 3
    assert secret not in repr(keys)
    assert not (tmp_path / "k.sqlite").exists()  # nothing is opened before the first key is asked for
    keys.current("driver:DRV-7")
    assert (tmp_path / "k.sqlite").exists()
    assert settings_mod.load("test").keystore_url.startswith("sqlite:///")
    monkeypatch.delenv("KUAILV_KEYSTORE")
    assert dataclasses.replace(settings_mod.load("test")).keystore_url.endswith("/test/keys.sqlite")
    with pytest.raises(KeyStoreError, match=r"no key store for scheme 'vault'.*KEYSTORE_SCHEMES"):
        keystore_from_settings(dataclasses.replace(settings, keystore_url="vault://kms.internal/transit"))
    with pytest.raises(KeyStoreError, match="unknown option"):
        keystore_from_settings(dataclasses.replace(settings, keystore_url="sqlite:///k.sqlite?mode=ro"))
