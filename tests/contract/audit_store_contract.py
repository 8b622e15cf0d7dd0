"""What the audit store promises, as assertions run against every database it supports.

``tests/unit/audit/test_store_sqlite.py`` runs every contract on SQLite (a file, and memory:// where one
connection suffices); ``tests/integration/test_audit.py`` runs the very same functions on PostgreSQL (the
``postgres`` fixture, a fresh database per test). Each contract gets ``open_store``: a new store object on
the same, initially empty, database (a second connection, as a second process would have).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from audit.actions import record_action
from audit.canonical import canonical_json
from audit.chain import Draft, Position, verify
from audit.store import AuditStore, AuditStoreError

OpenStore = Callable[[], AuditStore]
T0 = 1_780_293_600_000
TOPIC = "kuailv.order-events.v1"


def draft(partition: int, offset: int, order: str = "KL1", kind: str = "OrderCreated") -> Draft:
    pos = Position(TOPIC, partition, offset)
    return Draft(f"order-events/{partition}", kind, canonical_json({"offset": offset, "order": order}), order,
                 T0 + offset, None, pos, pos.ref)


def contract_append_read_verify(open_store: OpenStore) -> None:
    store = open_store()
    done = store.append([draft(0, o) for o in range(5)] + [draft(1, 0, "KL2")])
    assert [(e.chain, e.seq) for e in done.entries] == [("order-events/0", s) for s in range(1, 6)] + \
        [("order-events/1", 1)]
    assert done.skipped == 0
    read = list(store.entries("order-events/0"))
    assert read == done.entries[:5]  # every field round-trips, payload bytes included
    assert list(store.entries("order-events/0", after_seq=3)) == done.entries[3:5]
    assert store.chains() == ["order-events/0", "order-events/1"]
    assert [(h.chain, h.seq, h.hash) for h in store.heads()] == [("order-events/0", 5, read[-1].hash),
                                                                 ("order-events/1", 1, done.entries[-1].hash)]
    assert store.verify("order-events/0").ok and store.verify("order-events/0").checked == 5
    assert [e.seq for e in store.by_subject("KL2")] == [1]
    entry = record_action(store, "op-1", "operator", "order.cancel", "KL1", {"reason": "customer asked"}, T0)
    assert entry is not None and entry.chain == "api" and entry.actor is not None and entry.actor.role == "operator"
    assert [e.chain for e in store.by_subject("KL1")] == ["api"] + ["order-events/0"] * 5


def contract_append_is_idempotent_on_the_source_position(open_store: OpenStore) -> None:
    store = open_store()
    store.append([draft(0, o) for o in range(4)])
    again = store.append([draft(0, o) for o in range(2, 7)])  # a re-consumed batch overlapping the new one
    assert again.skipped == 2 and [e.source.offset for e in again.entries] == [4, 5, 6]  # type: ignore[union-attr]
    assert store.append([draft(0, 1), draft(0, 1)]).skipped == 2
    read = list(store.entries("order-events/0"))
    assert [e.seq for e in read] == list(range(1, 8))
    assert [e.source.offset for e in read] == list(range(7))  # type: ignore[union-attr]
    assert verify("order-events/0", read).ok
    # an action with a request id: a retried request appends nothing
    assert record_action(store, "u", "operator", "subscription.pause", "sub_1", {}, T0, ref="req-1") is not None
    assert record_action(store, "u", "operator", "subscription.pause", "sub_1", {}, T0, ref="req-1") is None
    assert [h.seq for h in store.heads() if h.chain == "subscriptions"] == [1]


def contract_concurrent_appenders_never_fork(open_store: OpenStore) -> None:
    """Two writers (own connections) append overlapping records to one chain at once."""
    stores = [open_store(), open_store()]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(store: AuditStore, offsets: range) -> None:
        try:
            start.wait()
            for o in offsets:
                store.append([draft(0, o), draft(0, o + 1)])  # overlaps the other writer's records
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, r)) for s, r in zip(stores, (range(0, 60), range(30, 90)),
                                                                           strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    read = list(stores[0].entries("order-events/0"))
    assert [e.seq for e in read] == list(range(1, 92))  # gap-free, no duplicates
    assert sorted(e.source.offset for e in read) == list(range(91))  # type: ignore[union-attr]
    verdict = stores[1].verify("order-events/0")
    assert verdict.ok and verdict.checked == 91, verdict


def contract_entries_cannot_be_updated_or_deleted(open_store: OpenStore) -> None:
    store = open_store()
    store.append([draft(0, 0), draft(0, 1)])
    for statement in ("UPDATE audit_entries SET payload = '{}' WHERE seq = 1",
                      "DELETE FROM audit_entries WHERE seq = 2"):
        try:
            with store.db.transaction(write=True) as tx:
                tx.execute(statement)
        except Exception as exc:
            assert "append-only" in str(exc), exc
        else:
            raise AssertionError(f"the store allowed {statement!r}")
    assert store.verify("order-events/0").ok


def contract_a_missing_head_row_is_refused_not_restarted(open_store: OpenStore) -> None:
    store = open_store()
    store.append([draft(0, 0), draft(0, 1)])
    with store.db.transaction(write=True) as tx:
        tx.execute("DELETE FROM audit_heads WHERE chain = 'order-events/0'")
    try:
        store.append([draft(0, 2)])
    except AuditStoreError as exc:
        assert "order-events/0" in str(exc) and "up to seq 2" in str(exc), exc
    else:
        raise AssertionError("an append restarted a chain whose head row was deleted")
    assert store.chains() == ["order-events/0"]  # verify --all still finds it


CONTRACTS = [contract_append_read_verify, contract_append_is_idempotent_on_the_source_position,
             contract_concurrent_appenders_never_fork, contract_entries_cannot_be_updated_or_deleted,
             contract_a_missing_head_row_is_refused_not_restarted]
