"""The audit store contract (``tests/contract/audit_store_contract.py``) on SQLite: a WAL file opened by
several store objects (as several processes would), and ``memory://`` (one shared object). The same
functions run on PostgreSQL in ``tests/integration/test_audit.py``. Plus what only a file shows: the
chain survives a reopen, and an edit made behind the store's back is found by ``verify``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.chain import Keys
from audit.store import AuditStore, AuditStoreError, audit_target
from tests.contract.audit_store_contract import CONTRACTS, OpenStore, draft


@pytest.fixture
def opened() -> Iterator[list[AuditStore]]:
    stores: list[AuditStore] = []
    yield stores
    for s in stores:
        s.close()


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_sqlite_file_keeps_the_store_contract(tmp_path: Path, opened: list[AuditStore], contract: OpenStore) -> None:
    def open_store() -> AuditStore:
        opened.append(AuditStore.from_url(f"sqlite:///{tmp_path / 'audit.sqlite'}?lock_timeout=30"))
        return opened[-1]

    contract(open_store)  # type: ignore[operator]


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_memory_keeps_the_store_contract(opened: list[AuditStore], contract: OpenStore) -> None:
    opened.append(AuditStore.from_url("memory://"))
    contract(lambda: opened[0])  # type: ignore[operator]


def _raw(path: Path, *statements: str) -> None:
    """Edit the file as someone with write access would: drop the append-only triggers first."""
    con = sqlite3.connect(path)
    try:
        con.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        con.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
        for s in statements:
            con.execute(s)
        con.commit()
    finally:
        con.close()


def test_a_reopened_file_continues_the_chain_and_finds_edits(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    url = f"sqlite:///{path}"
    keys = Keys.parse("k1:" + "s" * 32)
    store = AuditStore.from_url(url, keys)
    store.append([draft(0, o) for o in range(3)])
    store.close()
    store = AuditStore.from_url(url, keys)
    try:
        assert [e.seq for e in store.append([draft(0, o) for o in range(2, 6)]).entries] == [4, 5, 6]
        assert store.verify("order-events/0").ok
        _raw(path, "UPDATE audit_entries SET subject = 'KL-OTHER' WHERE seq = 4")
        broken = store.verify("order-events/0").broken
        assert broken is not None and (broken.seq, broken.reason) == (4, "edited"), broken
        _raw(path, "DELETE FROM audit_entries WHERE seq >= 5")  # cut the tail: only the head row remembers it
        broken = store.verify("order-events/0").broken
        assert broken is not None and broken.seq == 4  # still the first break
        _raw(path, "UPDATE audit_entries SET subject = 'KL1' WHERE seq = 4")
        broken = store.verify("order-events/0").broken
        assert broken is not None and (broken.seq, broken.reason) == (5, "truncated"), broken
        assert "the store's head row" in broken.detail
        # a verifier without the key cannot vouch for keyed entries
        plain = AuditStore.from_url(url)
        try:
            broken = plain.verify("order-events/0").broken
            assert broken is not None and (broken.seq, broken.reason) == (1, "key"), broken
        finally:
            plain.close()
    finally:
        store.close()


@pytest.mark.parametrize("url", ["sqlite:///", "mysql://u@h/db", "postgresql://u:secret@h/db?nope=1"])
def test_bad_store_urls_are_refused_with_the_url_and_no_password(url: str) -> None:
    with pytest.raises(AuditStoreError, match="KUAILV_AUDIT_STORE") as err:
        audit_target(url)
    assert "secret" not in str(err.value)


def test_a_locked_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    from audit.store import AuditStoreUnavailable

    path = tmp_path / "audit.sqlite"
    store = AuditStore.from_url(f"sqlite:///{path}?lock_timeout=0.2")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditStoreUnavailable, match="audit store sqlite"):
            store.append([draft(0, 0)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()
