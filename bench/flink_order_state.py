"""Benchmark: the order-state PyFlink job, Kafka to Kafka, per Python execution mode.

    python -m bench.flink_order_state [--orders 3000] [--modes process,thread]

Run from the main ``.venv``. Builds the same deterministic log as ``bench.order_projection``
(``build_log``: N interleaved order stories, 10% re-delivered duplicates, shuffle window 50),
produces it to a fresh input topic on the test stack's Kafka (started here if needed, and then
stopped here), and runs the bounded job once per mode in an embedded mini-cluster as a
subprocess of ``.venv-flink``::

    .venv-flink/bin/python -m jobs.order_state_job --bounded --local --mode <m> --parallelism 2 ...

Start-up is measured, not guessed: before each full run, the same command runs on a one-record
topic (``--startup-runs``, default 2; the fastest counts, so the net figure errs low). Its wall
time (client JVM, job graph, mini-cluster, Python workers, one record, the final checkpoint,
shut-down) is the fixed cost; "excluding start-up" divides the log by the full run's wall time
minus that. All runs use the same ``--checkpoint-ms`` (a bounded streaming job waits for one last
checkpoint before it finishes, so a long interval would show up as idle time). That difference
is noisy (a start-up varies by seconds on a busy machine), so a second figure comes from the
broker: the output topics use ``message.timestamp.type=LogAppendTime``, and "processing span" is
the time between the first and the last projection record appended (it leaves out start-up and
shut-down, and undercounts by at most the first bundle, ~1 s of
``python.fn-execution.bundle.time``).

Verifies each run: one latest projection per order, equal to the pure fold of the log
(``projections.order_state.fold_all``), and no dead letters. Prints the peak RSS of the job's
process tree (sampled with psutil): the client Python, the JVM (mini-cluster: JobManager and
TaskManager in one), and the Python workers (process mode; in thread mode Python runs inside the
JVM). Deletes its topics.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.order_projection import build_log
from config import settings as settings_mod
from infra import flink_env
from infra.services import quiet_client_config
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from streams.replay import read_topic
from streams.source import SourceRecord

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- Kafka


def create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(quiet_client_config(bootstrap))
    new = [NewTopic(n, num_partitions=p, replication_factor=1, config=c) for n, (p, c) in specs.items()]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # consumers started next must find every partition led
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and len(topics[n].partitions) == p
               and all(x.leader >= 0 for x in topics[n].partitions.values()) for n, (p, _) in specs.items()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no partition leaders for {sorted(specs)} after 30s")


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    from confluent_kafka.admin import AdminClient

    names = list(names)
    if not names:
        return
    admin = AdminClient(quiet_client_config(bootstrap))
    for name, future in admin.delete_topics(names, operation_timeout=30).items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            print(f"warning: could not delete topic {name}: {exc}")


def produce(bootstrap: str, topic: str, records: list[SourceRecord], *, event_time: bool = False,
            flush_s: float = 60.0) -> float:
    """Produce (murmur2 on the order id, like every producer of the project); returns seconds.
    ``event_time``: the records' timestamps become the Kafka timestamps (as the relay does)."""
    from confluent_kafka import Producer

    producer = Producer({**quiet_client_config(bootstrap), "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "partitioner": "murmur2_random"})
    errors: list[str] = []

    def done(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    t0 = time.perf_counter()
    for rec in records:
        while True:
            try:
                extra = {"timestamp": rec.timestamp_ms} if event_time and rec.timestamp_ms is not None else {}
                producer.produce(topic, key=rec.key, value=rec.value, on_delivery=done, **extra)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(flush_s) != 0 or errors:
        raise RuntimeError(f"producing to {topic} failed: {errors[:3] or f'records unacknowledged after {flush_s}s'}")
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- the job run


@dataclass
class Peaks:
    """Peak RSS (bytes) seen per part of the job's process tree."""

    client: int = 0
    jvm: int = 0
    workers: int = 0  # sum over Python worker processes at one instant
    total: int = 0
    worker_pids: set[int] = field(default_factory=set)
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds (user + system) last seen

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())

    _cmdlines: dict[int, str] = field(default_factory=dict)

    def _is_worker(self, proc: psutil.Process) -> bool:
        """A Beam Python worker (process mode), not one of the short ``python -c`` probes the JVM
        runs at start-up (find_libpython, pemja's path)."""
        if proc.pid not in self._cmdlines:
            self._cmdlines[proc.pid] = " ".join(proc.cmdline())
        return "pyflink.fn_execution" in self._cmdlines[proc.pid]

    def sample(self, root: psutil.Process) -> None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        client = jvm = workers = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                name = proc.name()
                t = proc.cpu_times()
                self.cpu[proc.pid] = t.user + t.system
            except psutil.Error:
                continue
            if proc.pid == root.pid:
                client += rss
            elif name == "java":
                jvm += rss
            elif name.startswith("python") and self._is_worker(proc):
                workers += rss
                self.worker_pids.add(proc.pid)
        self.client = max(self.client, client)
        self.jvm = max(self.jvm, jvm)
        self.workers = max(self.workers, workers)
        self.total = max(self.total, client + jvm + workers)


@dataclass
class Run:
    seconds: float
    peaks: Peaks
    log_path: Path


def run_job(mode: str, profile: str, bootstrap: str, input_topic: str, output_topic: str, dead_topic: str, *,
            parallelism: int, checkpoint_ms: int, log_path: Path) -> Run:
    cmd = [str(flink_env.python_executable()), "-m", "jobs.order_state_job", "--bounded", "--local",
           "--mode", mode, "--parallelism", str(parallelism), "--checkpoint-ms", str(checkpoint_ms),
           "--profile", profile, "--bootstrap", bootstrap, "--input-topic", input_topic, "--output-topic", output_topic,
           "--dead-letter-topic", dead_topic, "--group", f"bench-flink-{uuid.uuid4().hex[:10]}", "--no-restart"]
    peaks = Peaks()
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        root = psutil.Process(proc.pid)
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                peaks.sample(root)
                stop.wait(0.2)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        try:
            code = proc.wait(timeout=900)
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait(10)
            raise
        finally:
            stop.set()
            thread.join()
        seconds = time.perf_counter() - t0
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"job ({mode}) exited with {code}; last lines of {log_path}:\n{tail}")
    return Run(seconds, peaks, log_path)


# ----------------------------------------------------------------------------- verification


def verify(codec: AvroCodec, bootstrap: str, output_topic: str, dead_topic: str,
           expected_latest: dict[str, bytes]) -> tuple[int, float]:
    """(projection records, seconds between the first and last append); raises unless the latest
    projection per order is the fold's and there are no dead letters."""
    latest: dict[str, bytes] = {}
    records = 0
    first = last = None
    for rec in read_topic(bootstrap, output_topic):
        records += 1
        assert rec.key is not None and rec.value is not None and rec.timestamp_ms is not None
        first = rec.timestamp_ms if first is None else min(first, rec.timestamp_ms)
        last = rec.timestamp_ms if last is None else max(last, rec.timestamp_ms)
        latest[rec.key.decode()] = rec.value  # an order's records share a partition: offset order is its order
    dead = sum(1 for _ in read_topic(bootstrap, dead_topic))
    if len(latest) != len(expected_latest):
        raise SystemExit(f"{output_topic}: latest projections for {len(latest)} orders, "
                         f"expected {len(expected_latest)}")
    wrong = [oid for oid, value in expected_latest.items() if latest.get(oid) != value]
    if wrong:
        raise SystemExit(f"{output_topic}: {len(wrong)} orders differ from the fold of the log, e.g. {wrong[:3]}")
    if dead:
        raise SystemExit(f"{dead_topic}: {dead} dead letters; the benchmark log has no bad record")
    return records, ((last or 0) - (first or 0)) / 1000


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace, bootstrap: str) -> None:
    codec = AvroCodec()
    t_build = time.perf_counter()
    log = build_log(args.orders, args.seed, args.duplicates, args.shuffle)
    states, rejections = fold_all([(d.record_type, d.value) for d in (codec.decode(r.value) for r in log)])
    assert not rejections, rejections[:3]
    expected = {oid: codec.encode("OrderState", s["view"]) for oid, s in states.items() if s["view"] is not None}
    build_s = time.perf_counter() - t_build

    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench.flink-order-state.{run_id}"
    topics: list[str] = []
    logs_dir = settings_mod.load(args.profile).stack_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    try:
        inputs = {f"{prefix}.input": (6, {}), f"{prefix}.input-1": (6, {})}
        create_topics(bootstrap, inputs)
        topics += list(inputs)
        produce_s = produce(bootstrap, f"{prefix}.input", log)
        produce(bootstrap, f"{prefix}.input-1", log[:1])
        print(f"log: {len(log)} records, {args.orders} orders, {args.duplicates:.0%} duplicates, shuffle window "
              f"{args.shuffle} (built and folded in {build_s:.1f}s, produced to 6 partitions in {produce_s:.1f}s)")
        print(f"job: --bounded --local --parallelism {args.parallelism} --checkpoint-ms {args.checkpoint_ms}; "
              f"start-up = wall time of the same job on a 1-record topic")
        flink_per_cpu: dict[str, float] = {}
        for mode in args.modes:
            pairs = {}
            for what in ("tiny", "full"):
                names = {f"{prefix}.{mode}-{what}.out": (6, {"cleanup.policy": "compact",
                                                             "message.timestamp.type": "LogAppendTime"}),
                         f"{prefix}.{mode}-{what}.dlq": (3, {})}
                create_topics(bootstrap, names)
                topics += list(names)
                pairs[what] = list(names)
            tinies = [run_job(mode, args.profile, bootstrap, f"{prefix}.input-1", *pairs["tiny"],
                              parallelism=args.parallelism, checkpoint_ms=args.checkpoint_ms,
                              log_path=logs_dir / f"bench-flink-{mode}-tiny-{i}.log")
                      for i in range(args.startup_runs)]
            full = run_job(mode, args.profile, bootstrap, f"{prefix}.input", *pairs["full"],
                           parallelism=args.parallelism, checkpoint_ms=args.checkpoint_ms,
                           log_path=logs_dir / f"bench-flink-{mode}-full.log")
            records, span = verify(codec, bootstrap, *pairs["full"], expected)
            startup = min(t.seconds for t in tinies)
            net = full.seconds - startup
            p = full.peaks
            workers = f", Python workers {mib(p.workers)} ({len(p.worker_pids)} processes)" if p.worker_pids else \
                " (Python inside the JVM)"
            print(f"[{mode}] full run {full.seconds:.1f}s; start-up = fastest 1-record run {startup:.1f}s "
                  f"(of {', '.join(f'{t.seconds:.1f}' for t in tinies)})")
            print(f"[{mode}] {len(log) / full.seconds:,.0f} events/s including start-up, "
                  f"{len(log) / net:,.0f} events/s excluding it ({net:.1f}s)" if net > 0 else
                  f"[{mode}] the full run was not slower than the 1-record run: no net figure")
            print(f"[{mode}] {len(log) / span:,.0f} events/s over the processing span "
                  f"(first to last output append: {span:.1f}s)")
            print(f"[{mode}] verified: {records} projection records, latest for {len(expected)}/{args.orders} orders "
                  f"equal to the fold, 0 dead letters")
            print(f"[{mode}] peak RSS: client Python {mib(p.client)}, JVM {mib(p.jvm)}{workers}; "
                  f"tree {mib(p.total)}")
            cpu_net = p.cpu_s - min(t.peaks.cpu_s for t in tinies)
            flink_per_cpu[mode] = len(log) / cpu_net
            print(f"[{mode}] CPU: {p.cpu_s:.1f}s for the whole tree, {cpu_net:.1f}s net of the 1-record run's "
                  f"{min(t.peaks.cpu_s for t in tinies):.1f}s: {flink_per_cpu[mode]:,.0f} events per CPU-second")
        if args.worker:
            worker_cmp(args, bootstrap, prefix, topics, log, flink_per_cpu)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"bench process (build, produce, verify) peak RSS: {mib(own)}; job logs in {logs_dir}/bench-flink-*.log")
    finally:
        delete_topics(bootstrap, topics)


def worker_cmp(args: argparse.Namespace, bootstrap: str, prefix: str, topics: list[str], log: list,
               flink_per_cpu: dict[str, float]) -> None:
    """The worker on the same input topic, same CPU accounting (net of a 1-record run)."""
    from bench.kafka_peers import run_app
    from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE

    s = settings_mod.load(args.profile)
    out = {f"{prefix}.worker.out": (6, {"cleanup.policy": "compact"}), f"{prefix}.worker.dlq": (3, {})}
    create_topics(bootstrap, out)
    topics += list(out)
    log_dir = s.stack_dir / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = {}
    for what, topic, n in (("tiny", f"{prefix}.input-1", 1), ("full", f"{prefix}.input", len(log))):
        renames = {ORDER_EVENTS.name: topic, ORDER_STATE.name: f"{prefix}.worker.out",
                   DEAD_LETTERS.name: f"{prefix}.worker.dlq"}
        runs[what] = run_app("worker", s, renames, n, 300, log_dir)
    full, tiny = runs["full"], runs["tiny"]
    per_cpu = len(log) / (full.cpu_s - tiny.cpu_s)
    print(f"[worker] same topic: {full.rate_first:,.0f} events/s from its first write, CPU {full.cpu_s:.1f}s "
          f"({full.cpu_s - tiny.cpu_s:.1f}s net of a 1-record run): {per_cpu:,.0f} events per CPU-second")
    for mode, v in flink_per_cpu.items():
        print(f"Flink ({mode}) / worker, events per CPU-second: {v / per_cpu:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=3000)
    p.add_argument("--modes", default="process,thread", help="comma-separated: process, thread")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--checkpoint-ms", type=int, default=1000)
    p.add_argument("--startup-runs", type=int, default=2, help="1-record runs per mode; the fastest is the start-up")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duplicates", type=float, default=0.10)
    p.add_argument("--shuffle", type=int, default=50)
    p.add_argument("--profile", default="test")
    p.add_argument("--no-worker", dest="worker", action="store_false", help="skip the worker comparison")
    args = p.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in ("process", "thread")]
    if bad:
        p.error(f"unknown mode(s) {bad}: process, thread")
    problems = flink_env.check()
    if problems:
        raise SystemExit("; ".join(problems) + ": run scripts/setup_flink.sh")
    from infra import stack

    services = ["kafka", "redis"] if args.worker else ["kafka"]
    started = [svc for svc in services if not stack.is_healthy(args.profile, services=[svc])]
    settings = stack.ensure_started(args.profile, services=services, create_topics=False, out=None)
    try:
        run(args, settings.kafka_bootstrap)
    finally:
        if started:
            stack.stop(args.profile, services=started, out=None)


if __name__ == "__main__":
    main()
