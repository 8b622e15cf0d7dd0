"""Benchmark: the service under readers and 1,000 WebSocket clients (real ``kuailv serve``, real Kafka and Redis).

    python -m bench.api_load [--orders 2000] [--clients 1000] [--customers 100] [--rate 100] [--seconds 20]
                             [--readers 16]

Loopback only, on the test profile's Kafka and Redis (started if not running, stopped after if
started here), private topics and a private Redis prefix, removed at the end. Three phases, all
against one ``kuailv serve`` process:

1. **Floor.** ``GET /healthz`` by the same readers: what the HTTP stack costs with no work, and the
   bare Redis read of an order document in this process (``queries.order_document``): the data cost.
2. **Reads.** ``GET /orders/{id}`` of random seeded orders (their names and phones sealed, as the command
   side writes them, so every read opens them at the edge): the saturated rate with ``--readers``
   concurrent keep-alive clients, then the latency at a steady ``--read-rate`` (open loop, timed
   from when each request was due), by an operator and by a merchant reading their own orders.
3. **Live.** ``--clients`` WebSocket clients connect and follow ``--customers`` customers (an even
   share each). Order-state records are produced onto the order-state topic at ``--rate`` per second
   for ``--seconds``; every client of that customer must receive each one. Printed: the delay from
   the produce call to the client (p50/p95/p99/max), deliveries missing, and the order-read latency
   at ``--read-rate`` measured at the same time with all clients connected.

Then the server's peak RSS and CPU. Targets (issue 8 / 12): order read p99 < 20 ms, change → client
p99 < 500 ms at 1,000 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.flink_order_state import create_topics, delete_topics
from config import settings as settings_mod
from config.settings import Settings
from privacy.keystore import SqliteKeyStore, master_key_of
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, ORDER_ETAS, ORDER_EVENTS, ORDER_STATE
from service.auth import issue
from simulator.events import T0, order_story
from streams.sinks.redis_orders import OrderWrite, RedisOrderStore

PORT = 28020
SECRET = "b" * 40
ROOT = Path(__file__).resolve().parents[1]


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(ms: Sequence[float]) -> str:
    return (f"p50 {pct(ms, 0.50):6.2f} ms  p95 {pct(ms, 0.95):6.2f}  p99 {pct(ms, 0.99):6.2f}  "
            f"max {max(ms) if ms else float('nan'):7.2f}  (n={len(ms):,})")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seed_orders(s: Settings, prefix: str, n: int, customers: int, keys: Any | None) -> dict[str, dict[str, Any]]:
    """Fold ``n`` signed order stories, their personal data sealed as the command side seals it (so every read
    opens it at the edge), and write them to Redis as the worker would; return the views."""
    import redis

    from privacy.fields import seal_record

    codec = AvroCodec(epoch_ms=True)
    events = []
    for i in range(n):
        story = order_story(f"KLAPIB{i:06d}", T0 + i * 1000, ending="signed")
        customer = story[0][1]["customer_id"] = f"CUST-{i % customers:04d}"
        driver = next(e["driver_id"] for t, e in story if t == "OrderDispatched")
        if keys is not None:  # None (--plain): the views carry plain text, as records from before sealing do
            story = [(t, seal_record(t, e, {"customer": customer, "driver": driver}, keys)) for t, e in story]
        events += [(t, codec.decode(codec.encode(t, e)).value) for t, e in story]
    states, _ = fold_all(events)
    store = RedisOrderStore(redis.Redis.from_url(s.redis_url), prefix, codec)
    writes = [OrderWrite(oid, st, codec.encode("OrderState", st["view"])) for oid, st in states.items()]
    for i in range(0, len(writes), 500):
        store.save(writes[i:i + 500])
    return {oid: st["view"] for oid, st in states.items()}


def start_server(s: Settings, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(PORT)], cwd=ROOT,
                              env={**os.environ, **env}, stdout=open(log, "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1).read()
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"kuailv serve did not start; see {log}")


async def read_load(paths: Sequence[str], tokens: Sequence[str], readers: int, seconds: float,
                    rnd: random.Random, port: int = PORT) -> tuple[list[float], int]:
    """``readers`` keep-alive clients GET random ``paths`` for ``seconds``: latencies (ms), errors."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while time.perf_counter() < stop_at:
                path = rnd.choice(paths)
                headers = {"Authorization": f"Bearer {rnd.choice(tokens)}"}
                t = time.perf_counter()
                try:
                    ok = (await client.get(path, headers=headers)).status_code == 200
                except httpx.TransportError:
                    ok = False
                latencies.append((time.perf_counter() - t) * 1000)
                if not ok:
                    errors[0] += 1

    await asyncio.gather(*(reader() for _ in range(readers)))
    return latencies, errors[0]


async def paced_load(paths: Sequence[str], tokens: Sequence[str], rate: float, seconds: float,
                     rnd: random.Random, port: int = PORT) -> tuple[list[float], int]:
    """Open loop: a request every 1/``rate`` s whatever the answers do; each latency counts from the moment
    the request was due (no coordinated omission: a stall shows in every request it delayed). At most 64 in
    flight (the pool's size): a late request waits on a semaphore, not inside httpx's pool (whose wait for a
    connection times out and counts as an error of the server's)."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    in_flight = asyncio.Semaphore(64)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, limits=limits) as client:

        async def one(path: str, token: str, due: float) -> None:
            async with in_flight:
                try:
                    resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                    ok = resp.status_code == 200
                except httpx.TransportError:  # counted, not fatal: the figure says how many
                    ok = False
            latencies.append((time.perf_counter() - due) * 1000)
            if not ok:
                errors[0] += 1

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(rnd.choice(paths), rnd.choice(tokens), due)))
        await asyncio.gather(*tasks)
    return latencies, errors[0]


class ChangeProducer:
    """Produces order-state records of the seeded orders at a steady rate, remembering when each was sent."""

    def __init__(self, s: Settings, topic: str, views: dict[str, dict[str, Any]]) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 0, "acks": 1})
        self.topic = topic
        self.views = views
        self.codec = AvroCodec(epoch_ms=True)
        self.sent: dict[tuple[str, int], float] = {}
        self.per_customer: dict[str, int] = {}

    def run(self, rate: float, seconds: float) -> None:
        ids = list(self.views)
        rnd = random.Random(7)
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(min(wait, 0.005))
            oid = rnd.choice(ids)
            view = self.views[oid] = {**self.views[oid], "version": self.views[oid]["version"] + 1}
            value = self.codec.encode("OrderState", view)
            self.sent[(oid, view["version"])] = time.monotonic()  # CLOCK_MONOTONIC: same clock in every process
            self.per_customer[view["customer_id"]] = self.per_customer.get(view["customer_id"], 0) + 1
            self.producer.produce(self.topic, value, key=oid.encode())
            self.producer.poll(0)
        self.producer.flush(30)


async def _follow(port: int, customers: Sequence[str], tokens: dict[str, str], conn: Any) -> None:
    """One client process: connect a WebSocket per customer in ``customers``, report ready, record every
    change (order id, version, CLOCK_MONOTONIC at receipt) until told to stop, send them back."""
    import websockets

    received: list[tuple[str, int, float]] = []
    sockets = []
    for customer in customers:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={tokens[customer]}", max_queue=None,
                                      ping_interval=None, open_timeout=60)
        await ws.send(orjson.dumps({"subscribe": {"customer": customer}}).decode())
        sockets.append(ws)
    for ws in sockets:
        assert orjson.loads(await ws.recv())["type"] == "subscribed"

    async def listen(ws: Any) -> None:
        async for raw in ws:
            msg = orjson.loads(raw)
            if msg["type"] == "change":
                received.append((msg["orderId"], msg["data"]["version"], time.monotonic()))

    listeners = [asyncio.ensure_future(listen(ws)) for ws in sockets]
    conn.send("ready")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    conn.send(received)


def follow_process(port: int, customers: Sequence[str], tokens: dict[str, str], conn: Any) -> None:
    asyncio.run(_follow(port, customers, tokens, conn))


def paced_process(paths: Sequence[str], tokens: Sequence[str], rate: float, seconds: float, conn: Any) -> None:
    """``paced_load`` in a process of its own: the readers of the live phase do not share a GIL with the
    producer thread (on a busy machine that, not the server, set their latency)."""
    conn.send(asyncio.run(paced_load(paths, tokens, rate, seconds, random.Random(3))))


def live_load(customers: list[str], clients: int, procs: int, producer: ChangeProducer, rate: float,
              seconds: float, reads: tuple[Sequence[str], Sequence[str], float]) -> tuple[list[float], int, int, Any,
                                                                                          float]:
    """``clients`` WebSocket clients in ``procs`` processes, and the order readers in one more (so no client is
    the bottleneck); ``reads`` = (paths, tokens, rate)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    tokens = {c: issue(SECRET, f"bench-{c}", "merchant", c) for c in customers}
    share = [[customers[i % len(customers)] for i in range(k, clients, procs)] for k in range(procs)]
    t_connect = time.monotonic()
    pipes, children = [], []
    for part in share:
        here, there = ctx.Pipe()
        child = ctx.Process(target=follow_process, args=(PORT, part, tokens, there), daemon=True)
        child.start()
        pipes.append(here)
        children.append(child)
    for pipe in pipes:
        if not pipe.poll(120) or pipe.recv() != "ready":
            raise SystemExit("WebSocket clients did not connect")
    connect_s = time.monotonic() - t_connect
    reads_here, reads_there = ctx.Pipe()
    reader = ctx.Process(target=paced_process, args=(*reads, seconds, reads_there), daemon=True)
    reader.start()
    thread = threading.Thread(target=producer.run, args=(rate, seconds))
    thread.start()
    thread.join()
    read_result = reads_here.recv()
    reader.join(30)
    time.sleep(3)  # the last changes in flight
    received: list[tuple[str, int, float]] = []
    for pipe in pipes:
        pipe.send("stop")
    for pipe, child in zip(pipes, children, strict=True):
        received += pipe.recv()
        child.join(30)
    per_client = clients / len(customers)
    expected = int(sum(producer.per_customer.values()) * per_client)
    delays = [(t - producer.sent[(oid, v)]) * 1000 for oid, v, t in received if (oid, v) in producer.sent]
    return delays, expected, len(received), read_result, connect_s


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--customers", type=int, default=100)
    p.add_argument("--rate", type=float, default=100.0, help="order-state changes produced per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--readers", type=int, default=16, help="closed-loop readers of the saturation phase")
    p.add_argument("--read-rate", type=float, default=100.0, help="order reads per second of the latency phases")
    p.add_argument("--client-procs", type=int, default=2, help="processes the WebSocket clients run in")
    p.add_argument("--plain", action="store_true", help="seed orders without sealing their personal data")
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    from infra import stack

    s = settings_mod.load(args.profile)
    started = [svc for svc in ("kafka", "redis") if not stack.is_healthy(args.profile, services=[svc])]
    stack.ensure_started(args.profile, services=["kafka", "redis"], create_topics=False, out=None)
    tag = uuid.uuid4().hex[:6]
    topics = {spec.name: f"bench-{tag}.{spec.name}" for spec in (ORDER_EVENTS, ORDER_STATE, ALERTS, ORDER_ETAS)}
    prefix = f"benchapi{tag}"
    log_dir = s.stack_dir / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    server = None
    import redis

    r = redis.Redis.from_url(s.redis_url)
    try:
        create_topics(s.kafka_bootstrap, {t: (6, {}) for t in topics.values()})
        key_file = log_dir / f"api_load.{tag}.keys.sqlite"
        keys = SqliteKeyStore(key_file, master_key_of(os.environ.get("KUAILV_MASTER_KEY", "")))
        views = seed_orders(s, prefix, args.orders, args.customers, None if args.plain else keys)
        env = {"KUAILV_PROFILE": args.profile, "KUAILV_REDIS_PREFIX": prefix, "KUAILV_API_SECRET": SECRET,
               "KUAILV_KEYSTORE": f"sqlite:///{key_file}",
               "KUAILV_TOPIC_RENAMES": ",".join(f"{k}={v}" for k, v in topics.items())}
        server = start_server(s, env, log_dir / "api_load.serve.log")
        proc = psutil.Process(server.pid)
        cpu0 = proc.cpu_times()
        print(f"service: kuailv serve (1 process) on 127.0.0.1:{PORT}; {len(views):,} orders in Redis, "
              f"{args.customers} customers; {args.readers} readers, {args.clients:,} WebSocket clients")
        rnd = random.Random(1)
        ids = list(views)
        op = issue(SECRET, "bench-op", "operator")
        merchants = {c: issue(SECRET, f"bench-{c}", "merchant", c) for c in {v["customer_id"] for v in views.values()}}
        order_paths = [f"/orders/{oid}" for oid in ids]
        tokens = [op, next(iter(merchants.values()))]
        own_paths = [f"/orders/{oid}" for oid in ids if views[oid]["customer_id"] == next(iter(merchants))]

        from streams import queries

        ss = dataclasses.replace(s, redis_prefix=prefix)
        t = time.perf_counter()
        for oid in ids[:500]:
            queries.order_document(ss, oid)
        bare = (time.perf_counter() - t) * 1000 / 500
        health, _ = asyncio.run(read_load(["/healthz"], [op], args.readers, 5, rnd))
        print(f"\n1. floor: GET /healthz {len(health) / 5:8,.0f} req/s  {summary(health)}")
        print(f"   bare Redis read of an order document in process: {bare:.2f} ms")
        busy, errors = asyncio.run(read_load(order_paths, [op], args.readers, 10, rnd))
        print(f"2. reads, saturated: GET /orders/{{id}} {len(busy) / 10:8,.0f} req/s  {summary(busy)}  "
              f"errors {errors} ({len(busy) / len(health) * 5 / 10:.2f}x the healthz rate)")
        reads, errors = asyncio.run(paced_load(order_paths, [op], args.read_rate, 10, rnd))
        own, own_err = asyncio.run(paced_load(own_paths, tokens[1:], args.read_rate / 4, 5, rnd))
        print(f"   reads at {args.read_rate:,.0f}/s (open loop): {summary(reads)}  errors {errors}")
        print(f"   a merchant's own orders at {args.read_rate / 4:,.0f}/s: {summary(own)}  errors {own_err}")

        producer = ChangeProducer(s, topics[ORDER_STATE.name], views)
        customers = sorted({v["customer_id"] for v in views.values()})[:args.customers]

        delays, expected, got, (live_reads, live_err), connect_s = live_load(
            customers, args.clients, args.client_procs, producer, args.rate, args.seconds,
            (order_paths, [op], args.read_rate))
        print(f"3. live: {args.clients:,} clients connected in {connect_s:.1f} s; {len(producer.sent):,} changes "
              f"at {args.rate:,.0f}/s -> {got:,} of {expected:,} deliveries "
              f"({got / args.seconds:,.0f} messages/s), missing {expected - got:,}")
        print(f"   produced -> WebSocket client: {summary(delays)}")
        print(f"   order reads meanwhile: {summary(live_reads)}  errors {live_err}")
        cpu1 = proc.cpu_times()
        print(f"\nserver: peak RSS {peak_rss_mib(server.pid):.0f} MiB, "
              f"CPU {cpu1.user + cpu1.system - cpu0.user - cpu0.system:.1f} s over the run")
        print(f"targets: order read p99 {pct(reads, 0.99):.1f} ms (< 20), with clients {pct(live_reads, 0.99):.1f} ms; "
              f"change -> client p99 {pct(delays, 0.99):.0f} ms (< 500) at {args.clients:,} clients")
        if got < expected:
            raise SystemExit(f"{expected - got} deliveries missing")
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        for key in r.scan_iter(f"{prefix}:*", count=1000):
            r.delete(key)
        for leftover in log_dir.glob(f"api_load.{tag}.keys.sqlite*"):
            leftover.unlink()
        delete_topics(s.kafka_bootstrap, topics.values())
        if started:
            stack.stop(args.profile, services=started, out=None)


if __name__ == "__main__":
    main()
