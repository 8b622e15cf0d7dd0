"""Benchmark: every projection's Flink job against the worker's agent, per CPU-second.

    python -m bench.flink_projections [--projections orders,geofences,alerts,fleet] [--orders 3000]
                                      [--vans 2000] [--rounds 20] [--fences 10000] [--startup-runs 1]

One log per projection, produced once (Kafka timestamp = event time) to private topics of the test
stack's Kafka:

* ``orders``: ``bench.order_projection.build_log`` (N interleaved order stories, 10 % duplicates inserted
  anywhere, shuffle window 50: ``--duplicates``, ``--shuffle``) -> ``jobs.order_state_job`` / agent ``orders``;
* ``geofences``: ``bench.telemetry_path.build_log`` (10,000 fences written to a temp file, 2,000 vans with
  3-8 orders on board, ``--rounds`` pings each) -> ``jobs.timed_projection_job --projection geofences`` /
  agent ``geofences``;
* ``alerts``: the order log above -> ``--projection alerts`` / agent ``alerts``;
* ``fleet``: the driver statuses the geofence run's worker published (``kuailv.fleet.v1``, one
  partition) -> ``--projection fleet`` / agent ``fleet`` (needs ``geofences`` before it).

Both engines get ``KUAILV_FENCES`` and ``KUAILV_ETA_MODEL=baseline`` (the learnt model needs numba, which
``.venv-flink`` lacks). The Flink job runs bounded in an embedded mini-cluster, thread mode, parallelism 1.
Per engine and projection: records/s excluding start-up, CPU-seconds of the whole process tree (client
Python + JVM, or the worker) net of a run on a one-record log, and records per CPU-second; the table's last
column is Flink / worker per CPU-second (target >= 1). Flink's rate excluding start-up is the log over the
full run's wall time minus the one-record run's, and (less noisy) over the span between the first and the
last output append (``LogAppendTime`` output topics); the worker's is over the span from its first to its
last written batch (its Redis counters, ``bench.kafka_peers.measure_app``). The worker writes Redis and
InfluxDB besides the topics; the job writes the topics only. Servers' CPU (Kafka, Redis) is not counted.

Outputs are compared per topic: records, distinct keys, and the latest value per key (dead letters: count).
Needs the stack's Kafka, Redis and InfluxDB running (it neither starts nor stops them: other runs share them).
Deletes its topics, Redis keys and InfluxDB database; the job and worker logs stay in a temp directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.flink_order_state import Peaks, create_topics, delete_topics, produce
from bench.private_stores import drop_redis_prefix, influx_statement
from infra import flink_env
from schemas.topics import (
    ALERTS,
    ALL_TOPICS,
    DEAD_LETTERS,
    FLEET,
    GEOFENCE_TRANSITIONS,
    GPS,
    ORDER_ETAS,
    ORDER_EVENTS,
    ORDER_STATE,
    REDISPATCH_SUGGESTIONS,
    ROAD_CONDITIONS,
    SENSORS,
    VAN_ORDERS,
    TopicSpec,
)
from streams.source import SourceRecord

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
PROJECTIONS = ("orders", "geofences", "alerts", "fleet")


@dataclass
class Case:
    name: str  # the projection = the worker's agent
    inputs: list[tuple[TopicSpec, list[SourceRecord]]]  # produced in this order
    outputs: tuple[TopicSpec, ...]

    @property
    def records(self) -> int:
        return sum(len(v) for _, v in self.inputs)


@dataclass
class Measured:
    wall_s: float  # spawn -> exit (Flink) or spawn -> last record written (worker)
    span_s: float  # first -> last output append (Flink) or first -> last batch written (worker)
    cpu_s: float  # the process tree's CPU-seconds
    threads: dict[str, float] = field(default_factory=dict)  # Flink: CPU-seconds per thread name (last seen)


def thread_cpu(root: object, into: dict[tuple[int, str], tuple[str, float]]) -> None:
    """CPU-seconds of every thread of ``root``'s tree by name (``/proc/<pid>/task``; digits dropped, so the
    JIT compiler threads, GC threads, ... add up)."""
    import psutil

    try:
        procs = [root, *root.children(recursive=True)]  # type: ignore[attr-defined]
    except psutil.Error:
        return
    for proc in procs:
        try:
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                name = Path(f"/proc/{proc.pid}/task/{tid}/comm").read_text().strip()
                stat = Path(f"/proc/{proc.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                group = "python (client)" if proc.pid == root.pid else name.rstrip("0123456789#- ") or name  # type: ignore[attr-defined]
                into[(proc.pid, tid)] = (group, (int(stat[11]) + int(stat[12])) / TICKS)
        except (OSError, psutil.Error, IndexError, ValueError):
            continue


@dataclass
class Bench:
    args: argparse.Namespace
    settings: object
    bootstrap: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    topics: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuailv-flink-projections-")))

    def private(self, specs: tuple[TopicSpec, ...] | list[TopicSpec], run: str,
                config: dict[str, str] | None = None) -> dict[str, str]:
        """Private copies of ``specs`` for ``run`` (contract name -> actual), created."""
        names = {s.name: f"bench-fp-{self.tag}.{run}.{s.name.split('.')[1]}" for s in specs}
        create_topics(self.bootstrap, {names[s.name]: (s.partitions, {**s.config, **(config or {})}) for s in specs})
        self.topics += names.values()
        return names

    @property
    def env(self) -> dict[str, str]:
        fences = self.work / "fences.json"
        env = {"KUAILV_PROFILE": self.args.profile, "KUAILV_ETA_MODEL": "baseline",
               "KUAILV_INFLUX_DB": f"bench_fp_{self.tag}"}
        return {**env, "KUAILV_FENCES": str(fences)} if fences.exists() else env

    def renames(self, *actual: dict[str, str]) -> dict[str, str]:
        """Every contract topic renamed: the run's own topics, and a private name nobody created for the rest (a
        write there fails instead of landing in the stack's contract topics)."""
        out = {s.name: f"bench-fp-{self.tag}.missing.{s.name.split('.')[1]}" for s in ALL_TOPICS}
        for a in actual:
            out.update(a)
        return out


# ----------------------------------------------------------------------------- the logs


def order_log(args: argparse.Namespace) -> list[SourceRecord]:
    from bench.order_projection import build_log

    return build_log(args.orders, 42, args.duplicates, args.shuffle)


def geofence_log(args: argparse.Namespace, work: Path) -> list[tuple[TopicSpec, list[SourceRecord]]]:
    from bench.telemetry_path import build_log

    fence_doc, orders, gps = build_log(args.vans, args.fences, args.rounds)
    (work / "fences.json").write_text(json.dumps(fence_doc))
    return [(VAN_ORDERS, orders), (GPS, gps), (ROAD_CONDITIONS, [])]  # road conditions: an input, empty here


def build_case(name: str, args: argparse.Namespace, work: Path, earlier: dict[str, list[SourceRecord]]) -> Case:
    if name == "orders":
        return Case(name, [(ORDER_EVENTS, order_log(args))], (ORDER_STATE, VAN_ORDERS, FLEET, DEAD_LETTERS))
    if name == "alerts":
        return Case(name, [(ORDER_EVENTS, order_log(args)), (SENSORS, [])], (ALERTS, DEAD_LETTERS))
    if name == "geofences":
        return Case(name, geofence_log(args, work), (GEOFENCE_TRANSITIONS, ORDER_ETAS, ALERTS, FLEET, DEAD_LETTERS))
    if name == "fleet":
        if "fleet" not in earlier:
            raise SystemExit("--projections: fleet reads what the geofence run published; list geofences before it")
        return Case(name, [(FLEET, earlier["fleet"])], (REDISPATCH_SUGGESTIONS, ALERTS, DEAD_LETTERS))
    raise SystemExit(f"unknown projection {name!r}: {', '.join(PROJECTIONS)}")


# ----------------------------------------------------------------------------- the runs


def run_flink(b: Bench, case: Case, inputs: dict[str, str], outputs: dict[str, str], log_path: Path) -> Measured:
    """The bounded job in a mini-cluster; CPU = the tree sampled every 0.2 s, or, if larger, the client's
    rusage at exit (which includes the children it reaped)."""
    common = ["--bounded", "--local", "--mode", "thread", "--parallelism", "1", "--no-restart",
              "--checkpoint-ms", str(b.args.checkpoint_ms), "--profile", b.args.profile, "--bootstrap", b.bootstrap,
              "--group", f"bench-fp-{uuid.uuid4().hex[:10]}"]
    if case.name == "orders":
        topics = {"--input-topic": ORDER_EVENTS, "--output-topic": ORDER_STATE, "--dead-letter-topic": DEAD_LETTERS,
                  "--van-orders-topic": VAN_ORDERS, "--fleet-topic": FLEET}
        job = ["jobs.order_state_job", *(a for opt, s in topics.items()
                                         for a in (opt, {**inputs, **outputs}[s.name]))]
    else:
        renames = b.renames(inputs, outputs)
        job = ["jobs.timed_projection_job", "--projection", case.name,
               *(a for c, actual in renames.items() for a in ("--rename", f"{c}={actual}"))]
    cmd = [str(flink_env.python_executable()), "-m", *job, *common, *b.args.job_args.split()]
    peaks = Peaks()
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **b.env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    import psutil

    root = psutil.Process(proc.pid)
    stop = threading.Event()

    per_thread: dict[tuple[int, str], tuple[str, float]] = {}

    def sampler() -> None:
        while not stop.is_set():
            peaks.sample(root)
            thread_cpu(root, per_thread)
            stop.wait(0.2)

    def watchdog() -> None:
        if not stop.wait(b.args.timeout):
            os.killpg(proc.pid, signal.SIGKILL)

    threads = [threading.Thread(target=f, daemon=True) for f in (sampler, watchdog)]
    for t in threads:
        t.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"flink {case.name} exited with {proc.returncode}; last lines of {log_path}:\n{tail}")
    cpu = max(peaks.cpu_s, usage.ru_utime + usage.ru_stime)
    threads: dict[str, float] = {}
    for group, seconds in per_thread.values():
        threads[group] = threads.get(group, 0.0) + seconds
    return Measured(wall, append_span(b.bootstrap, list(outputs.values())), cpu, threads)


def append_span(bootstrap: str, topics: list[str]) -> float:
    from streams.replay import read_topic

    stamps = [r.timestamp_ms for t in topics for r in read_topic(bootstrap, t) if r.timestamp_ms is not None]
    return (max(stamps) - min(stamps)) / 1000 if stamps else 0.0


def run_worker(b: Bench, case: Case, renames: dict[str, str], n: int, log_path: Path,
               later: Callable[[], None] | None = None, after: int = 0) -> Measured:
    """``later``: produces the rest of the log once the worker has written ``after`` records (as live: a van is
    dispatched before it drives; the worker takes its inputs in arrival order, the job merges them by event
    time)."""
    import redis

    from bench.kafka_peers import measure_app

    prefix = f"fp{uuid.uuid4().hex[:8]}"
    b.prefixes.append(prefix)
    r = redis.Redis(port=b.settings.redis_port)  # type: ignore[attr-defined]
    env = {**b.env, "KUAILV_CONSUMER_GROUP": f"bench-fp-{prefix}", "KUAILV_REDIS_PREFIX": prefix,
           "KUAILV_TOPIC_RENAMES": ",".join(f"{k}={v}" for k, v in renames.items())}
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "cli.main", "worker", "--agents", case.name,
           "--loglevel", "warning"]

    def progress() -> int:
        nonlocal later
        done = int(r.hget(f"{prefix}:stats:{case.name}", "records") or 0)
        if later is not None and done >= after:
            later, produce_rest = None, later
            produce_rest()
        return done

    res = measure_app(case.name, cmd, env, progress, n, b.args.timeout, log_path)
    return Measured(res.total_s, res.span_s, res.cpu_s)


# ----------------------------------------------------------------------------- outputs


def summary(bootstrap: str, topic: str) -> tuple[Counter[tuple[bytes, bytes]], dict[bytes, bytes]]:
    """(every (key, value) with its count, latest value per key): a key's records share a partition, so offset
    order is its order."""
    from streams.replay import read_topic

    latest: dict[bytes, bytes] = {}
    every: Counter[tuple[bytes, bytes]] = Counter()
    for rec in read_topic(bootstrap, topic):
        pair = (rec.key or b"", rec.value or b"")
        every[pair] += 1
        latest[pair[0]] = pair[1]
    return every, latest


def compare(b: Bench, case: Case, flink: dict[str, str], worker: dict[str, str]) -> tuple[list[str], bool]:
    """Dead letters: the count (``failed_at`` is processing time). The order projection: the latest record per
    order (each engine publishes once per batch: the worker per consumed batch, the job per partition batch).
    Every other topic: the same records, as many times (derived records come from every applied event)."""
    lines, same = [], True
    for spec in case.outputs:
        fe, fl = summary(b.bootstrap, flink[spec.name])
        we, wl = summary(b.bootstrap, worker[spec.name])
        fn, wn = fe.total(), we.total()
        equal = sum(1 for k, v in wl.items() if fl.get(k) == v)
        if spec is DEAD_LETTERS:
            ok, what = fn == wn, "count"
        elif spec is ORDER_STATE:
            ok, what = fl.keys() == wl.keys() and equal == len(wl), "latest per key"
        else:
            ok, what = fe == we, "all records"
        lines.append(f"    {spec.name:34s} records flink {fn:7,d} worker {wn:7,d}; keys {len(fl):6,d} / {len(wl):6,d}; "
                     f"latest equal {equal:,d}/{len(wl):,d}; compared: {what}: {'same' if ok else 'DIFFER'}")
        same &= ok
    return lines, same


# ----------------------------------------------------------------------------- main


@dataclass
class Row:
    name: str
    records: int
    flink: Measured
    flink_tiny: Measured
    worker: Measured
    worker_tiny: Measured
    same: bool

    def per_cpu(self, full: Measured, tiny: Measured) -> float:
        return self.records / max(full.cpu_s - tiny.cpu_s, 1e-3)


def run_case(b: Bench, case: Case, earlier: dict[str, list[SourceRecord]], out: Callable[[str], None]) -> Row:
    logs = b.work
    specs = [spec for spec, _ in case.inputs]
    full_in = b.private(specs, f"{case.name}-in")
    tiny_in = b.private(specs, f"{case.name}-in1")
    for spec, records in case.inputs:
        produce(b.bootstrap, full_in[spec.name], records, event_time=True)
    first, records = case.inputs[0]
    produce(b.bootstrap, tiny_in[first.name], records[:1], event_time=True)
    append = {"message.timestamp.type": "LogAppendTime"}
    out(f"[{case.name}] log: " + ", ".join(f"{len(v):,d} {s.name}" for s, v in case.inputs if v))
    tinies = [run_flink(b, case, tiny_in, b.private(case.outputs, f"{case.name}-f1{i}", append),
                        logs / f"flink-{case.name}-tiny-{i}.log") for i in range(b.args.startup_runs)]
    flink_tiny = min(tinies, key=lambda m: m.cpu_s)
    flink_out = b.private(case.outputs, f"{case.name}-f", append)
    flink = run_flink(b, case, full_in, flink_out, logs / f"flink-{case.name}.log")
    out(f"[{case.name}] flink: {flink.wall_s:.1f} s wall, CPU {flink.cpu_s:.1f} s; 1-record run "
        f"{flink_tiny.wall_s:.1f} s wall, CPU {flink_tiny.cpu_s:.1f} s; output span {flink.span_s:.1f} s")
    net = {g: flink.threads.get(g, 0.0) - flink_tiny.threads.get(g, 0.0) for g in flink.threads}
    out(f"[{case.name}] flink CPU by thread, net of the 1-record run: " + ", ".join(
        f"{g} {c:.1f} s" for g, c in sorted(net.items(), key=lambda x: -x[1])[:6]))
    worker_out = b.private(case.outputs, f"{case.name}-w")
    worker_tiny_out = b.private(case.outputs, f"{case.name}-w1")
    worker_tiny = run_worker(b, case, b.renames(tiny_in, worker_tiny_out), 1, logs / f"worker-{case.name}-tiny.log")
    worker_in = b.private(specs, f"{case.name}-inw")
    produce(b.bootstrap, worker_in[first.name], records, event_time=True)

    def rest() -> None:
        for spec, more in case.inputs[1:]:
            produce(b.bootstrap, worker_in[spec.name], more, event_time=True)

    worker = run_worker(b, case, b.renames(worker_in, worker_out), case.records, logs / f"worker-{case.name}.log",
                        rest, len(records))
    out(f"[{case.name}] worker: {worker.wall_s:.1f} s to the last record, {worker.span_s:.1f} s from the first "
        f"written, CPU {worker.cpu_s:.1f} s; 1-record run CPU {worker_tiny.cpu_s:.1f} s")
    time.sleep(1.0)  # the worker's last produce is acknowledged before its counters move; margin for reading
    lines, same = compare(b, case, flink_out, worker_out)
    for line in lines:
        out(line)
    if FLEET in case.outputs:
        from streams.replay import read_topic

        earlier["fleet"] = [r for r in read_topic(b.bootstrap, worker_out[FLEET.name])]
    return Row(case.name, case.records, flink, flink_tiny, worker, worker_tiny, same)


def table(rows: list[Row], out: Callable[[str], None]) -> None:
    out("\nper projection (records = input records; rates exclude start-up; CPU net of the 1-record run):")
    out(f"  {'projection':10s} {'records':>8s} | {'flink/s':>8s} {'(span)':>8s} {'CPU-s':>6s} {'/CPU-s':>7s} | "
        f"{'worker/s':>8s} {'CPU-s':>6s} {'/CPU-s':>7s} | {'flink/worker per CPU-s':>22s}  outputs")
    for r in rows:
        f_net = r.flink.wall_s - r.flink_tiny.wall_s
        f_rate = f"{r.records / f_net:8,.0f}" if f_net > 0 else f"{'-':>8s}"
        f_span = f"{r.records / r.flink.span_s:8,.0f}" if r.flink.span_s > 0 else f"{'-':>8s}"
        fc, wc = r.per_cpu(r.flink, r.flink_tiny), r.per_cpu(r.worker, r.worker_tiny)
        out(f"  {r.name:10s} {r.records:8,d} | {f_rate} {f_span} {r.flink.cpu_s - r.flink_tiny.cpu_s:6.1f} "
            f"{fc:7,.0f} | {r.records / max(r.worker.span_s, 1e-3):8,.0f} {r.worker.cpu_s - r.worker_tiny.cpu_s:6.1f} "
            f"{wc:7,.0f} | {fc / wc:21.2f}x  {'same' if r.same else 'DIFFER'}")
    out("  target: flink/worker per CPU-s >= 1")


def influx(settings: object, q: str) -> None:
    influx_statement(settings, q)  # type: ignore[arg-type]


def cleanup(b: Bench) -> None:
    import redis

    r = redis.Redis(port=b.settings.redis_port)  # type: ignore[attr-defined]
    for prefix in b.prefixes:
        drop_redis_prefix(r, prefix)
    delete_topics(b.bootstrap, b.topics)
    try:
        influx(b.settings, f'DROP DATABASE "{b.env["KUAILV_INFLUX_DB"]}"')
    except OSError as exc:
        print(f"warning: could not drop the InfluxDB database: {exc}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--projections", default="orders,geofences,alerts,fleet")
    p.add_argument("--orders", type=int, default=3000)
    p.add_argument("--duplicates", type=float, default=0.10, help="order log: share of re-delivered events")
    p.add_argument("--shuffle", type=int, default=50, help="order log: bounded reordering window (1: none)")
    p.add_argument("--vans", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=20, help="pings per van (one every 10 s of event time)")
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--startup-runs", type=int, default=1, help="1-record Flink runs; the cheapest counts")
    p.add_argument("--checkpoint-ms", type=int, default=5000)
    p.add_argument("--job-args", default="", help="more options for the Flink jobs, e.g. '--batch-size 2000'")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    names = [n for n in args.projections.split(",") if n]
    problems = flink_env.check()
    if problems:
        raise SystemExit("; ".join(problems) + ": run scripts/setup_flink.sh")
    from config import settings as settings_mod
    from infra import stack

    needed = ["kafka", "redis", "influx"]
    down = [svc for svc in needed if not stack.is_healthy(args.profile, services=[svc])]
    if down:  # the stack is shared with other runs: this bench neither starts nor stops it
        raise SystemExit(f"{', '.join(down)} of the {args.profile} stack not running: "
                         f"python -m infra.stack start --profile {args.profile}")
    settings = settings_mod.load(args.profile)
    b = Bench(args, settings, settings.kafka_bootstrap)
    random.seed(0)
    rows: list[Row] = []
    earlier: dict[str, list[SourceRecord]] = {}
    try:
        influx(b.settings, f'CREATE DATABASE "{b.env["KUAILV_INFLUX_DB"]}"')
        print(f"Flink: --bounded --local --mode thread --parallelism 1 --checkpoint-ms {args.checkpoint_ms} "
              f"{args.job_args}; "
              f"worker: kuailv worker --agents <projection>; KUAILV_ETA_MODEL=baseline; logs in {b.work}", flush=True)
        for name in names:
            case = build_case(name, args, b.work, earlier)
            rows.append(run_case(b, case, earlier, lambda s: print(s, flush=True)))
        table(rows, print)
    finally:
        cleanup(b)
    if not all(r.same for r in rows):
        raise SystemExit("outputs differ between the Flink job and the worker (see above)")


if __name__ == "__main__":
    main()

