"""The API under the load, with ``bench.api_load``'s client machinery (imported, not copied).

* **Order reads** (target p99 < 20 ms): ``api_load.paced_load`` (open loop, each latency timed from when
  the request was due) of ``GET /orders/{id}`` at ``rate``/s of orders already in Redis, in windows of
  ``window_s`` so the latency is known over time; before each window, the bare Redis read of 20 order
  documents in this process (``streams.queries.order_document``): the data cost, the ratio's baseline.
* **WebSocket clients** (target change -> client p99 < 500 ms): ``api_load.follow_process``, ``clients``
  sockets in ``procs`` processes following the followed customers (an even share each); every change
  received is kept as (order id, version, CLOCK_MONOTONIC) and matched against when the producer sent the
  event that made that version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Sequence
from typing import Any


def read_process(port: int, candidates: Sequence[str], token: str, rate: float, window_s: float, profile: str,
                 prefix: str, conn: Any) -> None:
    """Process target: read in windows until told "stop", then send the windows back. Each window reads
    orders the worker has already projected (``EXISTS`` in Redis, of up to 500 random ``candidates``): an
    order not there yet is rebuilt from the log by the API (``service/orders.py``), another path, seconds."""
    import redis

    from bench import api_load
    from config import settings as settings_mod
    from streams import queries

    s = dataclasses.replace(settings_mod.load(profile), redis_prefix=prefix)
    r = redis.Redis.from_url(s.redis_url)
    rnd = random.Random(3)
    windows = []
    while not conn.poll():
        sample = rnd.sample(list(candidates), min(500, len(candidates)))
        pipe = r.pipeline(transaction=False)
        for oid in sample:
            pipe.exists(f"{prefix}:order:{oid}")
        ids = [oid for oid, found in zip(sample, pipe.execute(), strict=True) if found]
        if not ids:
            time.sleep(1)
            continue
        bare = []
        for oid in ids[:20]:
            t = time.perf_counter()
            queries.order_document(s, oid)
            bare.append((time.perf_counter() - t) * 1000)
        t0 = time.time()
        latencies, errors = asyncio.run(api_load.paced_load([f"/orders/{oid}" for oid in ids], [token], rate,
                                                            window_s, rnd, port=port))
        windows.append({"t": t0, "ms": [round(x, 3) for x in latencies], "errors": errors,
                        "bare_ms": [round(x, 3) for x in bare], "orders": len(ids)})
    conn.recv()
    conn.send(windows)


class WebSocketClients:
    """``clients`` sockets in ``procs`` spawned processes (``api_load.follow_process``)."""

    def __init__(self, port: int, customers: Sequence[str], tokens: dict[str, str], clients: int,
                 procs: int = 2) -> None:
        import multiprocessing

        from bench import api_load

        ctx = multiprocessing.get_context("spawn")
        self.clients, self.customers = clients, list(customers)
        share = [[self.customers[i % len(self.customers)] for i in range(k, clients, procs)] for k in range(procs)]
        self.pipes, self.children = [], []
        t = time.monotonic()
        for part in share:
            here, there = ctx.Pipe()
            child = ctx.Process(target=api_load.follow_process, args=(port, part, tokens, there), daemon=True)
            child.start()
            self.pipes.append(here)
            self.children.append(child)
        for pipe in self.pipes:
            if not pipe.poll(180) or pipe.recv() != "ready":
                raise RuntimeError("WebSocket clients did not connect within 180 s")
        self.connect_s = time.monotonic() - t

    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.pid is not None]

    def collect(self) -> list[tuple[str, int, float]]:
        received: list[tuple[str, int, float]] = []
        for pipe in self.pipes:
            pipe.send("stop")
        for pipe, child in zip(self.pipes, self.children, strict=True):
            if pipe.poll(60):
                received += pipe.recv()
            child.join(30)
        return received

    def terminate(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()


def change_delays(received: Sequence[tuple[str, int, float]], sent: dict[tuple[str, int], float],
                  clients_per_customer: float) -> tuple[list[float], int]:
    """(delay ms of every received change whose send time is known, deliveries expected)."""
    delays = [(t - sent[(oid, v)]) * 1000 for oid, v, t in received if (oid, v) in sent]
    return delays, int(len(sent) * clients_per_customer)
