"""Benchmark: decode -> fold -> Redis for a fixed order-event log.

    python -m bench.order_projection [--orders 5000] [--batch 500] [--shuffle]

Builds a deterministic log (``simulator.events.order_story`` for N orders,
interleaved, 10% re-delivered duplicates), encodes it in the Confluent wire
format, then runs ``OrderProjector.process`` batch by batch against the real
Redis of the test stack. Projection records are encoded but not sent (Kafka is
not part of this measurement). Prints events/s, per-batch latency percentiles
and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import time
import uuid

from config import settings as settings_mod
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from simulator.events import MINUTE, T0, order_story
from streams.order_projector import OrderProjector
from streams.sinks.redis_orders import RedisOrderStore
from streams.source import SourceRecord

ENDINGS = ("signed", "signed", "signed", "redispatched", "refused", "cancelled", "out_of_stock")


class CountingOutput:
    """Discards records (the benchmark measures decode, fold and Redis)."""

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
    return [SourceRecord(ORDER_EVENTS.name, 0, off, e["order_id"].encode(), codec.encode(t, e))
            for off, (t, e) in enumerate(log)]


async def run(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    s = settings_mod.load(args.profile)
    t_build = time.perf_counter()
    log = build_log(args.orders, args.seed, args.duplicates, args.shuffle)
    build_s = time.perf_counter() - t_build
    client = aioredis.Redis.from_url(s.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    output = CountingOutput()
    projector = OrderProjector(AvroCodec(), RedisOrderStore(client, prefix), output, consumer="bench",
                               wall_clock_ms=lambda: 0, flush_in_thread=False)
    latencies = []
    t0 = time.perf_counter()
    for start in range(0, len(log), args.batch):
        b0 = time.perf_counter()
        await projector.process(log[start:start + args.batch])
        latencies.append((time.perf_counter() - b0) * 1000)
    elapsed = time.perf_counter() - t0
    totals = projector.totals
    # clean up the benchmark's keys
    async for key in client.scan_iter(f"{prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"log: {len(log)} records, {args.orders} orders, {args.duplicates:.0%} duplicates, "
          f"shuffle window {args.shuffle} (built in {build_s:.1f}s)")
    print(f"decode -> fold -> Redis: {len(log) / elapsed:,.0f} events/s ({elapsed:.2f}s, batch {args.batch})")
    print(f"per-batch latency ms: p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  max {max(latencies):.1f}")
    print(f"applied {totals.applied}, duplicates {totals.duplicates}, buffered {totals.buffered}, "
          f"dead letters {totals.dead_letters}, order writes {totals.orders_written}, "
          f"projection records {output.records} ({output.bytes / max(output.records, 1):.0f} B avg)")
    print(f"peak RSS: {peak_mb:.0f} MiB")
    if totals.dead_letters:
        raise SystemExit(f"benchmark log produced {totals.dead_letters} dead letters; expected none")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duplicates", type=float, default=0.10)
    p.add_argument("--shuffle", type=int, default=50)
    p.add_argument("--profile", default="test")
    args = p.parse_args()
    from infra import stack

    started = not stack.is_healthy(args.profile, services=["redis"])
    stack.ensure_started(args.profile, services=["redis"], create_topics=False, out=None)
    try:
        asyncio.run(run(args))
    finally:
        if started:
            stack.stop(args.profile, services=["redis"], out=None)


if __name__ == "__main__":
    main()
