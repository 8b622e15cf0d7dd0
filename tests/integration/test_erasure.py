"""Personal data end to end on the real stack: sealed on the write path, opened only at the API's edge, and
crypto-shredded by an erasure, after which no store holds that customer's plaintext (it never did: every store
is read back and searched for it), while the orders still fold exactly as before.

Two orders of customer CUST-E<tag> and one of CUST-K<tag> go through the command side (a real SQLite event
store and key store), the real outbox relay, Kafka, the real worker (Redis + the compacted projection
topic) and ``kuailv serve``. One undecodable copy of an event goes into the order-event topic, so the
dead-letter topic holds raw bytes of the customer's records too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from commands.avro_mapping import to_command
from commands.order_service import OrderService
from config import settings as settings_mod
from config.settings import Settings
from schemas.topics import (
    ALERTS,
    DEAD_LETTERS,
    FLEET,
    ORDER_ETAS,
    ORDER_EVENTS,
    ORDER_STATE,
    VAN_ORDERS,
)
from service.reveal import process_keystore
from simulator.events import T0, order_story
from tests.integration.api_harness import ApiClient
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
PORT = 28013
SECRET = "e" * 40


class World:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.tag = uuid.uuid4().hex[:8].upper()
        self.tmp = tmp
        self.topics = private_topics(settings.kafka_bootstrap, f"erase{self.tag.lower()}",
                                     [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, FLEET, DEAD_LETTERS, ALERTS, ORDER_ETAS])
        self.prefix = f"erase{self.tag.lower()}"
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-erase-{self.tag}",
                    "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.05",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics), "KUAILV_API_SECRET": SECRET,
                    "KUAILV_EVENTSTORE": f"sqlite:///{tmp / 'events.sqlite'}",
                    "KUAILV_KEYSTORE": f"sqlite:///{tmp / 'keys.sqlite'}",
                    "KUAILV_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                    "KUAILV_AUDIT_STORE": f"sqlite:///{tmp / 'audit.sqlite'}",
                    "KUAILV_KEYSTORE_CACHE_TTL_S": "1"}
        self.erased, self.kept = f"CUST-E{self.tag}", f"CUST-K{self.tag}"
        # what must never be found in plaintext, anywhere (Chinese and ASCII, as people type them)
        self.secrets = {"name": f"王小明{self.tag}", "phone": f"139{int(self.tag, 16) % 10**8:08d}",
                        "address": f"朝阳区建国路{self.tag}号", "receiver": f"王小明本人{self.tag}"}
        self.kept_receiver = f"李厨师{self.tag}"
        self.orders = {f"KLER{self.tag}A": self.erased, f"KLER{self.tag}B": self.erased,
                       f"KLER{self.tag}C": self.kept}

    def settings(self) -> Settings:
        mp = pytest.MonkeyPatch()
        for k, v in self.env.items():
            mp.setenv(k, v)
        try:
            return settings_mod.load("test")
        finally:
            mp.undo()

    def place_orders(self, service: OrderService) -> None:
        for order_id, customer in self.orders.items():
            for record_type, record in order_story(order_id, T0, ending="signed"):
                record = dict(record)
                if record_type == "OrderCreated":
                    record["customer_id"] = customer
                    if customer == self.erased:
                        record["customer_name"] = self.secrets["name"]
                        record["customer_phone"] = self.secrets["phone"]
                        record["delivery_address"] = {**record["delivery_address"], "text": self.secrets["address"]}
                if record_type == "OrderDelivered":
                    record["receiver_name"] = self.secrets["receiver"] if customer == self.erased else \
                        self.kept_receiver
                command, _, kwargs = to_command(record_type, record)
                service.execute(command, order_id, **kwargs)

    def everything_stored(self, settings: Settings) -> dict[str, bytes]:
        """Every store's bytes: the event store and key store files, the audit store, each private topic's
        raw records, every Redis value under the private prefix, and a replay of the whole log."""
        out: dict[str, bytes] = {}
        for name in ("events.sqlite", "keys.sqlite", "audit.sqlite"):
            for suffix in ("", "-wal"):
                path = self.tmp / (name + suffix)
                if path.exists():
                    out[f"file {path.name}"] = path.read_bytes()
        for contract, topic in self.topics.items():
            out[f"topic {contract}"] = b"\n".join((r.key or b"") + b"\t" + (r.value or b"")
                                                  for r in all_records(settings.kafka_bootstrap, topic))
        r = redis.Redis.from_url(settings.redis_url)
        values = []
        for key in r.scan_iter(f"{self.prefix}:*", count=1000):
            kind = r.type(key)
            if kind == b"string":
                values.append(r.get(key) or b"")
            elif kind == b"hash":
                values += [k + b"=" + v for k, v in r.hgetall(key).items()]
            elif kind == b"set":
                values += list(r.smembers(key))
            elif kind == b"zset":
                values += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        out["redis"] = b"\n".join(values)
        replay = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--topic"], cwd=ROOT,
                                env={**os.environ, **self.env}, capture_output=True, timeout=120)
        assert replay.returncode == 0, replay.stderr[-2000:]
        out["replay"] = replay.stdout + replay.stderr
        return out

    def plaintext_found(self, settings: Settings) -> list[str]:
        stored = self.everything_stored(settings)
        return [f"{what} in {where}" for where, data in stored.items() for what, text in self.secrets.items()
                if text.encode() in data or text.encode("unicode_escape") in data]


@pytest.fixture(scope="module")
def world(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, ApiClient]]:
    tmp = tmp_path_factory.mktemp("erasure")
    w = World(stack, tmp)
    settings = w.settings()
    service = OrderService.from_url(settings.eventstore_url, keys=process_keystore(settings))
    w.place_orders(service)
    procs = [ProjectProcess(args, w.env, tmp / f"{args[0]}.log").start() for args in
             (["relay", "--interval", "0.1"], ["worker", "--agents", "orders", "--loglevel", "warning"],
              ["serve", "--port", str(PORT)])]
    api = ApiClient(PORT, SECRET)
    try:
        r = redis.Redis.from_url(settings.redis_url)
        wait_for(lambda: all(r.hget(f"{w.prefix}:order:{o}", "status") == b"SIGNED" for o in w.orders), 60,
                 "the three orders projected as SIGNED")
        created = all_records(settings.kafka_bootstrap, w.topics[ORDER_EVENTS.name])[0]
        SyncProducer(settings.kafka_bootstrap).send(w.topics[ORDER_EVENTS.name], created.key,
                                                    b"\x00\x00\x00\x03\xe7" + (created.value or b"")[5:])
        wait_for(lambda: all_records(settings.kafka_bootstrap, w.topics[DEAD_LETTERS.name]), 30,
                 "the undecodable copy dead-lettered")

        def up() -> bool:
            try:
                return api.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_for(up, 30, "kuailv serve", interval=0.3)
        yield w, api
    finally:
        for p in procs:
            p.stop()
        delete_topics(stack.kafka_bootstrap, w.topics.values())


def test_personal_data_is_sealed_everywhere_and_opened_only_at_the_edge(world: tuple[World, ApiClient]) -> None:
    w, api = world
    assert w.plaintext_found(w.settings()) == []  # not in any store, even before an erasure
    a = next(iter(w.orders))
    status, doc = api.get(f"/orders/{a}", api.token("customer_service"))
    assert status == 200 and doc["signature"]["receiverName"] == w.secrets["receiver"]  # opened for the role
    assert doc["driverInfo"]["name"] and doc["driverInfo"]["phone"]
    status, staff = api.get(f"/orders/{a}", api.token("warehouse_staff", doc["warehouseId"]))
    assert status == 200 and staff["signature"]["receiverName"] is None and staff["driverInfo"]["phone"] is None


def test_an_erasure_shreds_the_customer_and_leaves_the_orders(world: tuple[World, ApiClient]) -> None:
    w, api = world
    settings = w.settings()
    a, b, c = w.orders
    before = {o: api.get(f"/orders/{o}", api.token("operator"))[1] for o in w.orders}
    assert api.post(f"/customers/{w.erased}/erasure", {}, api.token("merchant", w.kept))[0] == 403
    status, report = api.post(f"/customers/{w.erased}/erasure", {}, api.token("customer_service"))
    assert status == 202 and report["keyVersionsDestroyed"] >= 1 and report["orders"] == 2
    assert report["viewsRewritten"] == 2

    for o in (a, b):
        status, doc = api.get(f"/orders/{o}", api.token("customer_service"))
        assert status == 200 and doc["signature"]["receiverName"] in (None, "[erased]")
        same = {k: v for k, v in doc.items() if k not in ("signature", "source")}
        assert same == {k: v for k, v in before[o].items() if k not in ("signature", "source")}  # still folds
        assert doc["driverInfo"]["name"] == before[o]["driverInfo"]["name"]  # the driver's data is not theirs
    status, kept = api.get(f"/orders/{c}", api.token("customer_service"))
    assert kept["signature"]["receiverName"] == w.kept_receiver  # another customer's data still opens
    assert w.plaintext_found(settings) == []

    latest = {r.key.decode(): r.value for r in all_records(settings.kafka_bootstrap, w.topics[ORDER_STATE.name])}
    assert all(b"[erased]" in latest[o] for o in (a, b))  # the compacted topic's current values carry none of it

    from audit.store import AuditStore

    store = AuditStore.from_url(w.env["KUAILV_AUDIT_STORE"])
    try:
        erasures = list(store.entries("erasures"))
        assert store.verify("erasures").ok
    finally:
        store.close()
    assert [(e.kind, e.subject, e.actor.role if e.actor else None) for e in erasures] == [
        ("erasure.customer", w.erased, "customer_service")]
    assert json.loads(erasures[0].payload)["details"]["orders"] == 2


def test_the_log_still_replays_to_the_same_orders(world: tuple[World, ApiClient]) -> None:
    """After the erasure the whole order-event log replays into the same three orders, at the same versions
    and states the API serves, with the customer's values still sealed (nobody can open them now)."""
    w, api = world
    replay = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--topic", "--workers", "1"], cwd=ROOT,
                            env={**os.environ, **w.env}, capture_output=True, timeout=120)
    assert replay.returncode == 0, replay.stderr[-2000:]
    views = {v["orderId"]: v for v in map(json.loads, replay.stdout.splitlines())}
    assert set(views) == set(w.orders)
    for order_id, view in views.items():
        served = api.get(f"/orders/{order_id}", api.token("operator"))[1]
        assert (view["status"], view["version"]) == (served["status"], served["version"]) == ("SIGNED", view["version"])
        receiver = view["signature"]["receiverName"]
        assert isinstance(receiver, dict) and receiver["key_id"] == f"customer:{w.orders[order_id]}"  # sealed
