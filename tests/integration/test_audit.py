"""The audit trail against the real servers.

1. The audit store contract (``tests/contract/audit_store_contract.py``) on a REAL PostgreSQL (the
   ``postgres`` fixture, port 25432): a fresh database per test, two connections appending to one chain.
2. ``kuailv audit run`` as a real process on the test Kafka: order stories (every ending) and one garbage
   record on a private 6-partition copy of ``kuailv.order-events.v1``. Worker A is killed with SIGKILL
   as soon as it has chained something; the group's offsets are then rewound to the start (the worst
   a crash can do: everything is consumed again), more stories are produced, and worker B chains the
   rest: every record is in its partition's chain exactly once, in log order, and the chains verify.
3. ``kuailv audit verify`` / ``show`` as real processes; then the SQLite file is edited directly
   (a payload UPDATE, a row DELETE, two rows swapped) and verify names the first broken entry, exit 1.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from audit.store import AuditStore
from config.settings import Settings
from infra import postgres as infra_postgres
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from simulator.events import MINUTE, T0, order_story
from tests.contract.audit_store_contract import CONTRACTS, OpenStore
from tests.integration.kafka_helpers import (
    SyncProducer,
    all_records,
    delete_topics,
    private_topics,
    renames_env,
    wait_for,
)
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.integration
ENDINGS = ("signed", "redispatched", "refused", "cancelled", "out_of_stock", "signed")


# --- 1. PostgreSQL --------------------------------------------------------------------------------

@pytest.fixture
def pg_url(postgres: infra_postgres.Cluster) -> Iterator[str]:
    name = f"kuailv_audit_{uuid.uuid4().hex[:12]}"
    infra_postgres.create_database(postgres, name)
    try:
        yield postgres.url(name)
    finally:
        infra_postgres.drop_database(postgres, name)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_postgres_keeps_the_audit_store_contract(pg_url: str, contract: OpenStore) -> None:
    opened: list[AuditStore] = []

    def open_store() -> AuditStore:
        opened.append(AuditStore.from_url(pg_url))
        return opened[-1]

    try:
        contract(open_store)  # type: ignore[operator]
    finally:
        for s in opened:
            s.close()


# --- 2. the worker on Kafka -------------------------------------------------------------------------

@dataclass
class Trail:
    topic: str  # the private topic actually consumed
    path: Path  # the SQLite audit store
    env: dict[str, str]
    orders: list[tuple[str, str]]  # (order id, ending)
    junk_key: str
    restart_log: str


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    con = sqlite3.connect(path, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM audit_entries").fetchone()[0]
    except sqlite3.OperationalError:  # the worker has not created the table yet
        return 0
    finally:
        con.close()


def _produce(bootstrap: str, topic: str, orders: list[tuple[str, str]], start: int) -> int:
    codec, producer, n = AvroCodec(), SyncProducer(bootstrap), 0
    for i, (oid, ending) in enumerate(orders):
        for t, e in order_story(oid, start + i * MINUTE, ending=ending):
            producer.send(topic, oid.encode(), codec.encode(t, e))
            n += 1
    producer.flush()
    return n


def _rewind(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Set the group's offsets back to 0; waits until the killed member has left the group."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, 0)
                                                    for p in range(ORDER_EVENTS.partitions)])]

    def rewound() -> bool:
        try:
            done = admin.alter_consumer_group_offsets(request)[group].result(15)
        except Exception:  # the dead member is still in the group until its session times out
            return False
        return not any(tp.error for tp in done.topic_partitions)  # errors come per partition, too

    wait_for(rewound, timeout, f"the offsets of {group} to be rewound", interval=1.0)


@pytest.fixture(scope="module")
def trail(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    tag = uuid.uuid4().hex[:8]
    topics = private_topics(stack.kafka_bootstrap, f"audit-{tag}", [ORDER_EVENTS])
    topic = topics[ORDER_EVENTS.name]
    logs = tmp_path_factory.mktemp("audit")
    path = logs / "audit.sqlite"
    group = f"kuailv-audit-it-{tag}"
    env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": group, "KUAILV_TOPIC_RENAMES": renames_env(topics),
           "KUAILV_AUDIT_STORE": f"sqlite:///{path}", "KUAILV_WORKER_BATCH_SIZE": "7",
           "KUAILV_WORKER_BATCH_SECONDS": "0.1"}
    orders = [(f"KLAUD{tag.upper()}{i:02d}", ENDINGS[i % len(ENDINGS)]) for i in range(16)]
    junk_key = f"KLAUD{tag.upper()}JUNK"
    a = ProjectProcess(["audit", "run", "--loglevel", "info"], env, logs / "worker-a.log")
    b = ProjectProcess(["audit", "run", "--loglevel", "info"], env, logs / "worker-b.log")
    try:
        first = _produce(stack.kafka_bootstrap, topic, orders[:8], T0)
        junk = SyncProducer(stack.kafka_bootstrap)
        # magic byte 0, then a schema id no catalog entry has (the old b"\x00\x00\x00\x00g..." read as id 103,
        # which RoadConditions took), then garbage
        junk.send(topic, junk_key.encode(), b"\x00" + (999_999).to_bytes(4, "big") + b"garbage: not an order event")
        junk.flush()
        first += 1
        a.start()
        wait_for(lambda: _count(path) > 0 or not a.alive(), 60, "worker A to chain something")
        assert a.alive(), a.log_tail()
        a.kill()  # SIGKILL: mid-way, maybe mid-batch
        _rewind(stack.kafka_bootstrap, group + "-audit", topic)
        total = first + _produce(stack.kafka_bootstrap, topic, orders[8:], T0 + 3600_000)
        b.start()
        wait_for(lambda: _count(path) >= total or not b.alive(), 90, f"worker B to chain all {total} records")
        time.sleep(1.0)  # a duplicate, if any, would land now
        assert b.stop() == 0, b.log_tail()
        yield Trail(topic, path, env, orders, junk_key, (logs / "worker-b.log").read_text())
    finally:
        a.kill()
        b.stop()
        delete_topics(stack.kafka_bootstrap, topics.values())


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "audit", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_every_record_is_chained_once_in_log_order_across_a_crash(stack: Settings, trail: Trail) -> None:
    records = all_records(stack.kafka_bootstrap, trail.topic)
    store = AuditStore.from_url(f"sqlite:///{trail.path}")
    try:
        assert store.chains() == [f"order-events/{p}" for p in sorted({r.partition for r in records})]
        for chain in store.chains():
            p = int(chain.split("/")[1])
            entries = list(store.entries(chain))
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            assert [(e.source.topic, e.source.offset) for e in entries] == \
                [(trail.topic, r.offset) for r in records if r.partition == p]  # type: ignore[union-attr]
            assert store.verify(chain).ok
        junk = store.by_subject(trail.junk_key)
        assert [e.kind for e in junk] == ["undecodable"]
        assert orjson.loads(junk[0].payload)["undecodable"]["reason_code"] == "UNKNOWN_SCHEMA_ID"
    finally:
        store.close()
    # worker B read everything again after the rewind: what A had chained was skipped, not appended twice
    stopped = re.search(r"(\d+) records, (\d+) entries appended, (\d+) already chained", trail.restart_log)
    assert stopped is not None, trail.restart_log[-2000:]
    read, appended, skipped = map(int, stopped.groups())
    assert read == len(records) and appended + skipped == len(records) and skipped > 0


def test_verify_and_show_as_a_user_runs_them(trail: Trail) -> None:
    done = _cli(trail.env, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    con = sqlite3.connect(trail.path)
    chains = con.execute("SELECT COUNT(DISTINCT chain) FROM audit_entries").fetchone()[0]
    con.close()
    assert done.stdout.count("ok      order-events/") == chains >= 3 and "every chain intact" in done.stderr
    signed = trail.orders[0][0]
    shown = _cli(trail.env, "show", "--order", signed)
    assert shown.returncode == 0, shown.stderr
    assert "OrderDelivered" in shown.stdout and "signed by '李厨师'" in shown.stdout
    assert f"signature sig/{signed}.png" in shown.stdout and "location 39." in shown.stdout
    assert _cli(trail.env, "head").returncode == 0


def _busiest_chain(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        row = con.execute("SELECT chain FROM audit_entries GROUP BY chain ORDER BY COUNT(*) DESC LIMIT 1").fetchone()
        return str(row[0])
    finally:
        con.close()


@pytest.mark.parametrize("tampering,named", [
    (["UPDATE audit_entries SET payload = substr(payload, 1, length(payload) - 1) || ',\"note\":1}' "
      "WHERE chain = :c AND seq = 3"], "at seq 3: edited"),
    (["DELETE FROM audit_entries WHERE chain = :c AND seq = 4"], "at seq 4: removed"),
    (["UPDATE audit_entries SET seq = -1 WHERE chain = :c AND seq = 5",
      "UPDATE audit_entries SET seq = 5 WHERE chain = :c AND seq = 6",
      "UPDATE audit_entries SET seq = 6 WHERE chain = :c AND seq = -1"], "at seq 5: reordered"),
], ids=["update-payload", "delete-row", "swap-rows"])
def test_an_edited_file_is_caught_and_the_first_broken_entry_named(trail: Trail, tmp_path: Path,
                                                                   tampering: list[str], named: str) -> None:
    copy = tmp_path / "audit.sqlite"
    src, dst = sqlite3.connect(trail.path), sqlite3.connect(copy)
    src.backup(dst)  # a consistent copy of the live WAL database
    src.close()
    chain = _busiest_chain(copy)
    dst.execute("DROP TRIGGER audit_entries_no_update")  # whoever owns the file can
    dst.execute("DROP TRIGGER audit_entries_no_delete")
    for statement in tampering:
        dst.execute(statement, {"c": chain})
    dst.commit()
    dst.close()
    done = _cli(trail.env, "verify", "--store", f"sqlite:///{copy}")
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [line for line in done.stdout.splitlines() if line.startswith("BROKEN")]
    assert len(broken) == 1 and re.match(rf"BROKEN  {re.escape(chain)} +{named}", broken[0]), done.stdout
    assert _cli(trail.env, "verify", "--store", f"sqlite:///{trail.path}").returncode == 0  # the original is intact
