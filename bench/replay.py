"""Benchmark: ``kuailv replay`` and ``kuailv rebuild`` of a million order events.

    python -m bench.replay [--events 1000000] [--workers 2] [--skip-topic]

The log: ``bench.order_projection.build_log`` for ~11,000 orders (duplicates, reordering), then
copied with renamed order ids (same length, so the Avro bytes stay valid) until it holds
``--events`` records of ~110,000 orders. It is written as a record log file and produced to a
fresh 6-partition topic of the test stack, and then timed, each as one command would run it:

* replay of the file and of the topic (views sorted by order id, written to /dev/null);
* rebuild of Redis from the topic (fold state, projection, indexes under a fresh prefix);

against, in the same run, one process folding the same records with ``AvroCodec.decode`` +
``fold`` in a plain loop (the floor a serial replay could reach), and checks that the three
agree with each other on every order (views equal; Redis equal to the replay).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

from bench.order_projection import build_log
from config import settings as settings_mod
from projections.order_state import fold
from schemas.codec import AvroCodec
from schemas.topics import ORDER_EVENTS
from streams.replay import write_record_log
from streams.source import SourceRecord

PARTITIONS = 6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def million(events: int) -> list[SourceRecord]:
    base_orders = 11_000
    base = build_log(base_orders, 42, 0.10, 50)
    out: list[SourceRecord] = []
    copy = 0
    while len(out) < events:
        new_prefix = f"K{chr(ord('A') + copy // 26)}{chr(ord('A') + copy % 26)}".encode()  # 3 bytes, like b"KLB"
        for r in base:
            key = new_prefix + r.key[3:]  # type: ignore[index]
            value = r.value.replace(r.key, key)  # type: ignore[union-attr,arg-type]
            out.append(SourceRecord(ORDER_EVENTS.name, zlib.crc32(key) % PARTITIONS, 0, key, value, r.timestamp_ms))
            if len(out) >= events:
                break
        copy += 1
    offsets = [0] * PARTITIONS
    numbered = []
    for r in out:
        numbered.append(SourceRecord(r.topic, r.partition, offsets[r.partition], r.key, r.value, r.timestamp_ms))
        offsets[r.partition] += 1
    return numbered


def serial_floor(log: list[SourceRecord]) -> float:
    codec = AvroCodec(epoch_ms=True)
    states: dict = {}
    t0 = time.perf_counter()
    for r in log:
        d = codec.decode(r.value)
        oid = d.value["order_id"]
        states[oid] = fold(states.get(oid), d.record_type, d.value).state
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--skip-topic", action="store_true", help="only the file replay (no Kafka)")
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    from bench.flink_order_state import create_topics, delete_topics, produce
    from infra import stack

    s = settings_mod.load(args.profile)
    services = ["redis"] if args.skip_topic else ["kafka", "redis"]
    started = [svc for svc in services if not stack.is_healthy(args.profile, services=[svc])]
    stack.ensure_started(args.profile, services=services, create_topics=False, out=None)
    topic = f"bench-replay-{uuid.uuid4().hex[:6]}"
    prefix = f"bench-rebuild-{uuid.uuid4().hex[:6]}"
    try:
        t0 = time.perf_counter()
        log = million(args.events)
        orders = len({r.key for r in log})
        print(f"log: {len(log):,} records of {orders:,} orders (built in {time.perf_counter() - t0:.1f}s); "
              f"{args.workers} processes on {os.cpu_count()} cores")
        floor_s = serial_floor(log)
        n_events = len(log)
        print(f"serial floor (one process: AvroCodec.decode + fold in a loop): {floor_s:6.1f}s "
              f"{len(log) / floor_s:9,.0f} events/s")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "log.avro")
            with open(path, "wb") as fh:
                write_record_log([log], fh)
            size_mb = os.path.getsize(path) / 2**20
            if not args.skip_topic:
                create_topics(s.kafka_bootstrap, {topic: (PARTITIONS, {})})
                t0 = time.perf_counter()
                produce(s.kafka_bootstrap, topic, log, event_time=True, flush_s=120)
                print(f"(produced to {topic} in {time.perf_counter() - t0:.1f}s)")
            del log  # the commands below run in their own processes
            file_views = command("replay of the record-log file", ["replay", path], args, floor_s, n_events,
                                 f"{size_mb:.0f} MiB file")
        if not args.skip_topic:
            topic_views = command("replay of the topic", ["replay", "--topic", "--topic-name", topic], args,
                                  floor_s, n_events)
            if topic_views != file_views:
                raise SystemExit("topic and file replays disagree")
            command("rebuild of Redis from the topic", ["rebuild", "--topic-name", topic, "--prefix", prefix], args,
                    floor_s, n_events)
            check_redis(s, prefix, file_views)
    finally:
        if not args.skip_topic:
            delete_topics(s.kafka_bootstrap, [topic])
        cleanup(s, prefix)
        if started:
            stack.stop(args.profile, services=started, out=None)


def command(what: str, cli_args: list[str], args: argparse.Namespace, floor_s: float, n: int,
            extra: str = "") -> bytes:
    """Run ``kuailv <cli_args>`` as a user would; its stdout, after printing the timing."""
    cmd = [sys.executable, "-m", "cli.main", "--profile", args.profile, *cli_args, "--workers", str(args.workers)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=900)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cli_args)} failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    summary = done.stderr.decode(errors="replace").strip().splitlines()[-1]
    print(f"{what}: {seconds:6.1f}s {n / seconds:9,.0f} events/s = {floor_s / seconds:.2f}x the serial floor "
          f"(whole command, start-up included){'; ' + extra if extra else ''}\n    kuailv says: {summary}")
    return done.stdout


def check_redis(s: settings_mod.Settings, prefix: str, views: bytes) -> None:
    import orjson
    import redis

    from streams.sinks.redis_orders import RedisOrderStore

    client = redis.Redis.from_url(s.redis_url)
    store = RedisOrderStore(client, prefix)
    lines = views.splitlines()
    sample = lines[:: max(1, len(lines) // 2000)]
    wrong = 0
    for line in sample:
        view = orjson.loads(line)
        if store.view(view["orderId"]) != view:
            wrong += 1
    client.close()
    if wrong:
        raise SystemExit(f"rebuilt Redis differs from the replay on {wrong} of {len(sample)} sampled orders")
    print(f"rebuilt Redis equals the replay on {len(sample):,} sampled orders")


def cleanup(s: settings_mod.Settings, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(s.redis_url)
    keys = list(client.scan_iter(f"{prefix}:*", count=10_000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i:i + 5000])
    client.close()


if __name__ == "__main__":
    main()
