"""Benchmark: the order projection through the local Kafka, our worker next to two peers.

    python -m bench.kafka_peers [--orders 3000] [--rounds 2] [--apps worker,quix,faust-naive]

One log (``bench.order_projection.build_log``: N interleaved order stories, 10 % re-delivered
duplicates, bounded reordering) is produced once to a fresh 6-partition topic of the test
stack's Kafka. Then, in turns, each application consumes the whole topic with a fresh
consumer group and writes Redis:

* ``worker``: ``kuailv worker --agents orders`` (Redis fold state + projection + indexes
  with compare-and-set, the compacted projection topic, dead letters, offsets committed
  after the writes);
* ``quix``: ``bench/peers/quix_orders.py``, Quix Streams 3.28 with its RocksDB state and
  ``RedisSink`` (public view only);
* ``faust-naive``: ``bench/peers/faust_naive.py``, a per-event Faust agent (GET, fold, SET).

All three fold with the same pure code and decode with the same codec. Each reports the
number of input records it has written in a Redis counter, polled every 50 ms: the rate
"from start" runs from spawning the process to the last record written (start-up
included); "from first" from the first record written. CPU seconds and peak RSS are of
the application's process tree. Every round runs the apps in the same order; the best
round per app counts (this machine is shared: single runs vary by ±20 %). The worker's
and Quix's final Redis views are checked against the pure fold of the log.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from bench.flink_order_state import create_topics, delete_topics, produce
from bench.order_projection import build_log
from bench.private_stores import drop_redis_prefix
from config import settings as settings_mod
from config.settings import Settings
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE

ROOT = Path(__file__).resolve().parents[1]
PEERS_PY = ROOT / ".venv-peers" / "bin" / "python"


@dataclass
class Result:
    app: str
    records: int
    total_s: float
    first_s: float  # spawn -> first record written
    span_s: float  # first record written -> last
    cpu_s: float
    peak_rss_mb: float

    @property
    def rate_total(self) -> float:
        return self.records / self.total_s

    @property
    def rate_first(self) -> float:
        return self.records / max(self.span_s, 1e-3)

    @property
    def per_cpu_s(self) -> float:
        return self.records / max(self.cpu_s, 1e-3)


def app_command(app: str, s: Settings, topics: dict[str, str], tag: str, state_dir: Path) -> tuple[list[str], dict]:
    host, port = "127.0.0.1", str(s.redis_port)
    if app == "worker":
        renames = ",".join(f"{k}={v}" for k, v in topics.items())
        env = {"KUAILV_PROFILE": s.profile, "KUAILV_CONSUMER_GROUP": f"bench-worker-{tag}",
               "KUAILV_REDIS_PREFIX": f"bw{tag}", "KUAILV_TOPIC_RENAMES": renames}
        return [sys.executable, "-m", "cli.main", "worker", "--agents", "orders", "--loglevel", "warning"], env
    env = {"PEER_BOOTSTRAP": s.kafka_bootstrap, "PEER_TOPIC": topics[ORDER_EVENTS.name], "PEER_REDIS_HOST": host,
           "PEER_REDIS_PORT": port, "PEER_PREFIX": f"bp{tag}", "PEER_COUNTER": f"bp{tag}:counter",
           "PEER_GROUP": f"bench-{app}-{tag}", "PEER_STATE_DIR": str(state_dir)}
    if app == "quix":
        return [str(PEERS_PY), "-m", "bench.peers.quix_orders"], env
    if app == "faust-naive":
        return [str(PEERS_PY), "-m", "bench.peers.faust_naive", "worker", "-l", "warn"], env
    raise ValueError(app)


def counter(r: object, app: str, tag: str) -> int:
    key = f"bw{tag}:stats:orders" if app == "worker" else f"bp{tag}:counter"
    raw = r.hget(key, "records") if app == "worker" else r.get(key)  # type: ignore[attr-defined]
    return int(raw or 0)


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def run_app(app: str, s: Settings, topics: dict[str, str], n: int, timeout_s: float, log_dir: Path) -> Result:
    import redis

    tag = uuid.uuid4().hex[:8]
    cmd, env = app_command(app, s, topics, tag, log_dir / f"state-{tag}")
    r = redis.Redis(port=s.redis_port)
    result = measure_app(app, cmd, env, lambda: counter(r, app, tag), n, timeout_s, log_dir / f"{app}-{tag}.log")
    result.tag = tag  # type: ignore[attr-defined]
    return result


def measure_app(app: str, cmd: list[str], env: dict[str, str], progress: Callable[[], int], n: int,
                timeout_s: float, log_path: Path) -> Result:
    """Spawn ``cmd`` and poll ``progress()`` (input records written so far) every 50 ms until it reaches ``n``;
    then SIGTERM the process group. Times from the spawn and from the first record written; CPU and peak RSS of
    the process tree."""
    with open(log_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    ps = psutil.Process(proc.pid)
    first_t = None
    peak = 0.0
    cpu: dict[int, float] = {}
    try:
        while True:
            time.sleep(0.05)
            for p in tree(ps):
                try:
                    peak_p = p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    continue
                peak = max(peak, sum(q.memory_info().rss for q in tree(ps) if q.is_running()) / 2**20, peak_p / 2**20)
            c = progress()
            now = time.perf_counter()
            if c > 0 and first_t is None:
                first_t = now
            if c >= n:
                done_t = now
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited early with {proc.returncode}; log {log_path}")
            if now - t0 > timeout_s:
                raise RuntimeError(f"{app} wrote {c}/{n} records in {timeout_s}s; log {log_path}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert first_t is not None
    return Result(app, n, done_t - t0, first_t - t0, done_t - first_t, sum(cpu.values()), peak)


def check_views(s: Settings, app: str, tag: str, expected: dict[str, dict]) -> int:
    """How many orders' Redis view differs from the pure fold (0 = all equal)."""
    import redis

    r = redis.Redis(port=s.redis_port)
    if app == "worker":
        from streams.sinks.redis_orders import RedisOrderStore

        store = RedisOrderStore(r, f"bw{tag}")
        return sum(1 for oid, v in expected.items() if store.view(oid) != v)
    return sum(1 for oid, v in expected.items() if orjson.loads(r.get(f"bp{tag}:order:{oid}") or b"null") != v)


def cleanup_redis(s: Settings, tags: list[str]) -> None:
    import redis

    r = redis.Redis(port=s.redis_port)
    for tag in tags:
        for prefix in (f"bw{tag}", f"bp{tag}"):
            drop_redis_prefix(r, prefix)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--apps", default="worker,quix,faust-naive")
    p.add_argument("--timeout", type=float, default=240.0)
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    apps = [a for a in args.apps.split(",") if a]
    if any(a != "worker" for a in apps) and not PEERS_PY.exists():
        raise SystemExit(f"{PEERS_PY} is missing: run `make setup` (scripts/setup_peers.sh)")
    from infra import stack

    s = settings_mod.load(args.profile)
    started = [svc for svc in ("kafka", "redis") if not stack.is_healthy(args.profile, services=[svc])]
    stack.ensure_started(args.profile, services=["kafka", "redis"], create_topics=False, out=None)
    tag = uuid.uuid4().hex[:6]
    topics = {ORDER_EVENTS.name: f"bench-{tag}.order-events", ORDER_STATE.name: f"bench-{tag}.order-state",
              DEAD_LETTERS.name: f"bench-{tag}.dead-letters"}
    tags: list[str] = []
    log_dir = s.stack_dir / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        log = build_log(args.orders, 42, 0.10, 50)
        create_topics(s.kafka_bootstrap, {topics[ORDER_EVENTS.name]: (6, {}),
                                          topics[ORDER_STATE.name]: (6, {"cleanup.policy": "compact"}),
                                          topics[DEAD_LETTERS.name]: (3, {})})
        produce(s.kafka_bootstrap, topics[ORDER_EVENTS.name], log)
        codec = AvroCodec(epoch_ms=True)
        states, _ = fold_all([(d.record_type, d.value) for d in (codec.decode(r.value) for r in log)])
        expected = {oid: public_view(st["view"]) for oid, st in states.items() if st["view"] is not None}
        print(f"log: {len(log):,} records of {args.orders:,} orders on a 6-partition topic "
              f"({s.kafka_bootstrap}); {args.rounds} round(s) of {', '.join(apps)}")
        best: dict[str, Result] = {}
        for rnd in range(1, args.rounds + 1):
            for app in apps:
                res = run_app(app, s, topics, len(log), args.timeout, log_dir)
                tags.append(res.tag)  # type: ignore[attr-defined]
                wrong = check_views(s, app, res.tag, expected) if app in ("worker", "quix") else 0  # type: ignore[attr-defined]
                print(f"  round {rnd} {app:12s} {res.rate_total:8,.0f} rec/s from start ({res.total_s:5.1f}s), "
                      f"{res.rate_first:8,.0f} from first ({res.first_s:4.1f}s to first), "
                      f"{res.per_cpu_s:8,.0f} rec per CPU-s, peak RSS {res.peak_rss_mb:4.0f} MiB"
                      + (f", {wrong} WRONG views" if wrong else ""), flush=True)
                if wrong:
                    raise SystemExit(f"{app}: {wrong} orders differ from the pure fold")
                if app not in best or res.rate_total > best[app].rate_total:
                    best[app] = res
        print("\nbest of rounds (records/s):")
        print(f"  {'app':12s} {'from start':>11s} {'from first':>11s} {'per CPU-s':>10s} {'peak RSS':>9s}")
        for app, res in best.items():
            print(f"  {app:12s} {res.rate_total:11,.0f} {res.rate_first:11,.0f} {res.per_cpu_s:10,.0f} "
                  f"{res.peak_rss_mb:6.0f} MiB")
        if "worker" in best:
            w = best["worker"]
            for peer in [a for a in best if a != "worker"]:
                o = best[peer]
                print(f"  worker / {peer}: {w.rate_total / o.rate_total:.1f}x from start, "
                      f"{w.rate_first / o.rate_first:.1f}x from first, {w.per_cpu_s / o.per_cpu_s:.1f}x per CPU-s")
    finally:
        cleanup_redis(s, tags)
        delete_topics(s.kafka_bootstrap, topics.values())
        if started:
            stack.stop(args.profile, services=started, out=None)


if __name__ == "__main__":
    main()
