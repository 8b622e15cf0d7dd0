"""Benchmark: the order path in process (decode -> fold -> Redis + projection records).

    python -m bench.order_projection [--orders 5000] [--batch 500]

Builds a deterministic log (``simulator.events.order_story`` for N orders, interleaved,
10 % re-delivered duplicates, bounded reordering) in the Confluent wire format, then runs
the worker's real ``BatchLoop`` + ``OrderStateAgent`` over it (a consumer double serves the
log; Redis is the test stack's; projection records and dead letters are encoded and handed
to an output that counts them instead of Kafka). In the same run it measures the baselines:

* bare decode: ``fastavro.schemaless_reader`` of the same framed records (the library's public
  reader; what ``AvroCodec.decode`` was when the issue measured it), and ``AvroCodec.decode``
  as the path uses it now;
* a naive per-event loop (decode, GET the state, fold, SET state and view) on a slice.

Prints events/s, per-event cost, the ratios, per-batch latency percentiles (process + write of
a batch) and peak RSS. The log interleaves orders so nearly every record of a 500-record batch
touches a different order: the worst case for per-batch coalescing.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import statistics
import threading
import time
import uuid
from typing import Any

import fastavro

from bench.log_consumer import LogConsumer
from config import settings as settings_mod
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from simulator.events import MINUTE, T0, order_story
from streams.source import SourceRecord

ENDINGS = ("signed", "signed", "signed", "redispatched", "refused", "cancelled", "out_of_stock")


class CountingOutput:
    """Discards records (the in-process benchmark measures decode, fold, encode and Redis)."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        self.records += 1
        self.bytes += len(value)

    def flush(self) -> int:
        return 0


def build_log(orders: int, seed: int, duplicate_rate: float, shuffle_window: int) -> list[SourceRecord]:
    rng = random.Random(seed)
    codec = AvroCodec()
    events = []
    for i in range(orders):
        oid = f"KLB{i:07d}"
        story = order_story(oid, T0 + (i % 600) * MINUTE // 10, ending=ENDINGS[i % len(ENDINGS)])
        events.extend((e["event_time"], i, t, e) for t, e in story)
    events.sort(key=lambda x: (x[0], x[1]))
    log = [(t, e) for _, _, t, e in events]
    dups = [log[rng.randrange(len(log))] for _ in range(int(len(log) * duplicate_rate))]
    for d in dups:
        log.insert(rng.randrange(len(log)), d)
    if shuffle_window > 1:  # bounded reordering, like a producer retry or a late partition
        for start in range(0, len(log), shuffle_window):
            chunk = log[start:start + shuffle_window]
            rng.shuffle(chunk)
            log[start:start + shuffle_window] = chunk
    return [SourceRecord(ORDER_EVENTS.name, 0, off, e["order_id"].encode(), codec.encode(t, e), e["event_time"])
            for off, (t, e) in enumerate(log)]


def per_event_us(fn: Any, n: int, rounds: int = 3) -> float:
    """Best of ``rounds``: this machine is shared, the minimum is the least disturbed."""
    return per_event_wall_cpu(fn, n, rounds)[0]


def per_event_wall_cpu(fn: Any, n: int, rounds: int = 3) -> tuple[float, float]:
    """(wall, CPU) microseconds per event, best of ``rounds`` each. CPU time does not count the
    time another tenant of this shared machine held the core (steal), wall time does."""
    wall = cpu = float("inf")
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall / n * 1e6, cpu / n * 1e6


def public_decode_all(log: list[SourceRecord]) -> None:
    catalog = AvroCodec().catalog
    for r in log:
        entry = catalog.by_id(int.from_bytes(r.value[1:5], "big"))  # type: ignore[index]
        fastavro.schemaless_reader(io.BytesIO(r.value[5:]), entry.parsed, None)  # type: ignore[index]


def naive_loop(client: Any, prefix: str, log: list[SourceRecord]) -> None:
    import orjson

    from projections.order_state import fold
    from projections.order_view import public_view

    codec = AvroCodec(epoch_ms=True)
    for r in log:
        d = codec.decode(r.value)
        oid = d.value["order_id"]
        raw = client.get(f"{prefix}:naive:{oid}")
        st = fold(orjson.loads(raw) if raw else None, d.record_type, d.value).state
        client.set(f"{prefix}:naive:{oid}", orjson.dumps(st))
        if st["view"] is not None:
            client.set(f"{prefix}:naive-view:{oid}", orjson.dumps(public_view(st["view"])))


def run_path(client: Any, prefix: str, log: list[SourceRecord], batch: int) -> dict[str, Any]:
    """The worker's loop and order agent over ``log``; wall time and per-batch latencies."""
    from streams.order_agent import OrderStateAgent
    from streams.runtime import tune_gc
    from streams.runtime.batch_loop import BatchLoop
    from streams.sinks.redis_orders import RedisOrderStore
    from streams.sinks.stats import StatsSink

    codec = AvroCodec(epoch_ms=True)
    output = CountingOutput()
    agent = OrderStateAgent(codec, RedisOrderStore(client, prefix, codec), output, StatsSink(client, prefix),
                            consumer="bench", wall_clock_ms=lambda: 0)
    started: dict[int, float] = {}
    latencies: list[float] = []
    process, write = agent.process, agent.write

    def timed_process(records: list[SourceRecord]) -> Any:
        t = time.perf_counter()
        staged = process(records)
        started[id(staged)] = t
        return staged

    def timed_write(staged: Any) -> None:
        write(staged)
        latencies.append((time.perf_counter() - started.pop(id(staged))) * 1000)

    agent.process, agent.write = timed_process, timed_write  # type: ignore[method-assign]
    consumer = LogConsumer(log)
    loop = BatchLoop(agent, consumer, max_batch=batch, max_wait_s=0.05)
    stop = threading.Event()
    tune_gc()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    thread = threading.Thread(target=loop.run, args=(stop,), name="bench-loop")
    thread.start()
    consumer.done.wait()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stop.set()
    thread.join()
    return {"elapsed": elapsed, "cpu": cpu, "latencies": latencies, "totals": loop.totals, "output": output,
            "cache": agent.cache}


def run(args: argparse.Namespace) -> None:
    import redis

    s = settings_mod.load(args.profile)
    t_build = time.perf_counter()
    log = build_log(args.orders, args.seed, args.duplicates, args.shuffle)
    build_s = time.perf_counter() - t_build
    n = len(log)
    client = redis.Redis.from_url(s.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        public_us, public_cpu = per_event_wall_cpu(lambda: public_decode_all(log), n)
        codec = AvroCodec(epoch_ms=True)
        codec_us, codec_cpu = per_event_wall_cpu(lambda: [codec.decode(r.value) for r in log], n)
        res = run_path(client, prefix, log, args.batch)
        public_us2, public_cpu2 = per_event_wall_cpu(lambda: public_decode_all(log), n)  # the same, after
        public_us, public_cpu = min(public_us, public_us2), min(public_cpu, public_cpu2)
        naive_slice = log[:args.naive]
        naive_us = per_event_us(lambda: naive_loop(client, prefix, naive_slice), len(naive_slice), rounds=1)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*", count=5000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
        client.close()
    path_us = res["elapsed"] / n * 1e6
    cpu_us = res["cpu"] / n * 1e6
    totals, output = res["totals"], res["output"]
    q = statistics.quantiles(res["latencies"], n=100, method="inclusive")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"log: {n:,} records, {args.orders:,} orders, {args.duplicates:.0%} duplicates, "
          f"shuffle window {args.shuffle} (built in {build_s:.1f}s); batches of {args.batch}")
    print(f"bare decode, fastavro.schemaless_reader (public API): {public_us:6.1f} us/event  "
          f"{1e6 / public_us:9,.0f} events/s")
    print(f"bare decode, AvroCodec.decode (as the path decodes):  {codec_us:6.1f} us/event  "
          f"{1e6 / codec_us:9,.0f} events/s")
    print(f"naive per-event loop (decode, GET, fold, SET x2):     {naive_us:6.1f} us/event  "
          f"{1e6 / naive_us:9,.0f} events/s  ({len(naive_slice):,} records)")
    print(f"worker path decode -> fold -> Redis + projection:     {path_us:6.1f} us/event  "
          f"{n / res['elapsed']:9,.0f} events/s  ({res['elapsed']:.2f}s; CPU {cpu_us:.1f} us/event, 2 threads)")
    print(f"  wall: {path_us / public_us:.2f}x the public bare decode, {path_us / codec_us:.2f}x AvroCodec.decode; "
          f"{naive_us / path_us:.1f}x faster than the naive loop")
    print(f"  CPU:  {cpu_us / public_cpu:.2f}x the public bare decode ({public_cpu:.1f} us CPU/event), "
          f"{cpu_us / codec_cpu:.2f}x AvroCodec.decode ({codec_cpu:.1f}); Redis's own CPU not counted")
    print(f"per-batch latency ms (process + write): p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  "
          f"max {max(res['latencies']):.1f}")
    print(f"applied {totals.applied:,}, duplicates {totals.duplicates:,}, buffered {totals.buffered:,}, "
          f"dead letters {totals.dead_letters}, order writes {totals.orders_written:,}, "
          f"projection records {output.records:,} ({output.bytes / max(output.records, 1):.0f} B avg); "
          f"state cache {len(res['cache']):,} orders, {res['cache'].hits:,} hits / {res['cache'].misses:,} misses")
    print(f"peak RSS: {peak_mb:.0f} MiB")
    if totals.dead_letters:
        raise SystemExit(f"benchmark log produced {totals.dead_letters} dead letters; expected none")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duplicates", type=float, default=0.10)
    p.add_argument("--shuffle", type=int, default=50)
    p.add_argument("--naive", type=int, default=3000, help="records for the naive per-event loop")
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    from infra import stack

    started = not stack.is_healthy(args.profile, services=["redis"])
    stack.ensure_started(args.profile, services=["redis"], create_topics=False, out=None)
    try:
        run(args)
    finally:
        if started:
            stack.stop(args.profile, services=["redis"], out=None)


if __name__ == "__main__":
    main()
