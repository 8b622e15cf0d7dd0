"""Benchmark: scale-out on this machine (issue 12): two workers share the partitions, a killed one loses nothing.

    python -m bench.scale_out [--orders 3000] [--vans 2000] [--rounds 25] [--devices 500] [--profile scale]
                              [--agents orders,telemetry] [--phases scale,kill] [--scale-rounds 2]

One city-shaped log (``bench.order_projection.build_log``: order stories with 10 % duplicates and bounded
reordering; ``bench.geofences.drive``: vans pinging every 10 s; cold-chain sensors every 10 s) on private
per-run topics of the ``scale`` stack (every contract topic renamed through ``KUAILV_TOPIC_RENAMES``, the
partition counts of ``schemas/topics.py``), drained by real ``kuailv worker --agents orders,telemetry``
processes (the hot agents whose outputs can be checked against the pure code: the order fold and each van's
newest position; geofences need fences and van orders and are measured in process by ``bench.geofences``).

a. scale: the whole log drained by ONE worker (fresh group), then by TWO (another fresh group): records/s
   from spawn and from the first write, the ratio two/one, each worker's partitions (from its own log:
   assigned minus revoked) and the group's members (AdminClient), CPU seconds and peak RSS per worker.
b. kill: two workers consuming while a producer sends the log at a steady rate; ``kill -9`` one of them
   a third of the way in; measured: the broker declaring it dead (session timeout, from the broker log),
   the survivor's assignment of the dead worker's partitions (its log), the first commit past the kill
   on those partitions (written records: offsets are committed after the writes). After draining: every
   order's Redis view equals the pure fold of the log, every van's newest ping is its Redis position,
   every ping and reading is an InfluxDB point, the counters cover the inputs (at-least-once).

Exits 1 when something broke or was lost; prints the figures otherwise (ratios next to absolutes).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench import scale_out_support as sup
from bench.flink_order_state import create_topics, delete_topics, produce
from bench.private_stores import drop_redis_prefix, influx_statement
from config import settings as settings_mod
from config.settings import Settings
from schemas.topics import GPS, ORDER_EVENTS, SENSORS
from streams.kafka_lag import end_offsets
from streams.source import SourceRecord

DEFAULT_AGENTS = "orders,telemetry"
TAKEOVER_TARGET_S = 10.0


class Run:
    """One phase's private topics, consumer group, Redis prefix and InfluxDB database."""

    def __init__(self, s: Settings, label: str, log_dir: Path, agents: str, topics: list[str]) -> None:
        self.s, self.tag = s, f"{uuid.uuid4().hex[:6]}{label}"
        self.agents, self.topics = agents, topics  # what the workers run, and the contract topics they read
        self.renames = sup.private_topics(self.tag)
        self.group, self.prefix, self.db = f"scale-{self.tag}", f"sc{self.tag}", f"scale_{self.tag}"
        self.groups = agent_groups(self.group, agents)  # what each agent derives (streams.worker.make_loop)
        self.log_dir = log_dir
        create_topics(s.kafka_bootstrap, sup.topic_specs(self.renames))
        influx_statement(s, f'CREATE DATABASE "{self.db}"')

    @property
    def env(self) -> dict[str, str]:
        return {"KUAILV_CONSUMER_GROUP": self.group, "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_INFLUX_DB": self.db,
                "KUAILV_TOPIC_RENAMES": ",".join(f"{k}={v}" for k, v in self.renames.items()),
                "KUAILV_ETA_MODEL": "baseline"}

    def inputs(self) -> list[str]:
        return [self.renames[t] for t in self.topics]

    def lag(self, admin: Any) -> dict[tuple[str, int], int]:
        """Records not committed yet, per input partition that has any."""
        hw = end_offsets(self.s.kafka_bootstrap, self.inputs())
        done = self.committed(admin)
        return {tp: end - done.get(tp, 0) for tp, end in hw.items() if end > done.get(tp, 0)}

    def committed(self, admin: Any) -> dict[tuple[str, int], int]:
        """The committed offsets of every agent's group (their topics differ)."""
        out: dict[tuple[str, int], int] = {}
        for g in self.groups:
            out.update(sup.committed(admin, g))
        return out

    def settle(self, admin: Any, r: Any, total: int, timeout_s: float, tick: Any = None) -> dict[tuple[str, int], int]:
        """Wait until the lag is 0, or the counters cover the inputs and stood still for 3 s (an idle worker
        whose last asynchronous commit failed in a rebalance commits again only with new records): what lag
        is left."""
        t0, last, since = time.monotonic(), -1, time.monotonic()
        while True:
            lag = self.lag(admin)
            c = sup.counters(r, self.prefix)
            if c != last:
                last, since = c, time.monotonic()
            if not lag or (c >= total and time.monotonic() - since > 3):
                return lag
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"not drained in {timeout_s:.0f}s: {c:,}/{total:,} counted, lag {lag}")
            if tick:
                tick()
            time.sleep(0.2)

    def cleanup(self, r: Any) -> None:
        drop_redis_prefix(r, self.prefix)
        delete_topics(self.s.kafka_bootstrap, self.renames.values())
        admin = sup.admin_client(self.s.kafka_bootstrap)
        for group, fut in admin.delete_consumer_groups(self.groups, request_timeout=10).items():
            try:
                fut.result(timeout=10)
            except Exception as exc:  # e.g. never created (no worker got that far): nothing to remove
                print(f"note: consumer group {group} not deleted: {exc}")
        try:
            influx_statement(self.s, f'DROP DATABASE "{self.db}"')
        except OSError as exc:
            print(f"warning: could not drop InfluxDB database {self.db}: {exc}")


def agent_groups(group: str, agents: str) -> list[str]:
    """The consumer groups the worker's ``agents`` join with ``KUAILV_CONSUMER_GROUP=group``."""
    from streams.order_agent import OrderStateAgent
    from streams.telemetry_agent import TelemetryAgent

    classes = {"orders": OrderStateAgent, "telemetry": TelemetryAgent}
    return [group + getattr(classes[a], "group_suffix", "") for a in agents.split(",")]


def group_members(admin: Any, groups: list[str]) -> str:
    """Members and their partition counts per group, from the group coordinator (retried while it rebalances)."""
    out = []
    for group in groups:
        for _ in range(25):
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            sizes = sorted(len(m.assignment.topic_partitions) for m in desc.members)
            if sum(sizes):
                break
            time.sleep(0.2)
        out.append(f"{group}: {len(desc.members)} members, partitions per member {sizes}")
    return "; ".join(out)


def drain(run: Run, n: int, total: int, r: Any, admin: Any, timeout_s: float) -> dict[str, Any]:
    """Start ``n`` workers on the produced log and wait until the counters cover it and the lag is 0."""
    t0 = time.perf_counter()
    meter = sup.CpuMeter(run.s)
    workers = [sup.spawn_worker(f"{run.tag}-w{i + 1}", run.s, run.agents, run.env, run.log_dir) for i in range(n)]
    first = done = None
    machine: tuple[float, dict[str, float]] = (0.0, {})
    try:
        while True:
            time.sleep(0.1)
            for w in workers:
                w.sample()
                if not w.alive():
                    raise RuntimeError(f"worker {w.name} exited with {w.proc.returncode}; log {w.log_path}")
            c, t = sup.counters(r, run.prefix), time.perf_counter()
            first = first or (t if c else None)
            if c >= total:
                done = t
                machine = meter.read()
                break
            if t - t0 > timeout_s:
                raise RuntimeError(f"{n} worker(s) counted {c:,}/{total:,} records in {timeout_s:.0f}s")
        left = run.settle(admin, r, total, timeout_s)
        members = group_members(admin, run.groups)
        owned = [sup.assignments(w.log_path, run.renames).owned for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert first is not None and done is not None
    return {"n": n, "total_s": done - t0, "span_s": done - first, "rate": total / (done - t0),
            "rate_first": total / max(done - first, 1e-3), "cpu": [w.cpu_s for w in workers],
            "rss": [w.peak_rss_mb for w in workers], "owned": owned, "members": members, "busy": machine[0],
            "stack_cpu": machine[1], "left": left}


def phase_scale(s: Settings, log: dict[str, list[SourceRecord]], args: argparse.Namespace, r: Any,
                admin: Any, log_dir: Path) -> list[str]:
    total = sum(len(v) for v in log.values())
    print(f"\na. one worker, then two (agents {args.agents}), each draining the same {total:,} records with a "
          "fresh group", flush=True)
    problems: list[str] = []
    best: dict[int, dict[str, Any]] = {}
    pairs: list[float] = []  # two / one within each round: adjacent runs, the fairest comparison here
    last_one = 0.0
    for n in [n for _ in range(args.scale_rounds) for n in (1, 2)]:
        run = Run(s, f"a{n}", log_dir, args.agents, list(log))
        try:
            for topic, records in log.items():
                produce(s.kafka_bootstrap, run.renames[topic], records)
            res = drain(run, n, total, r, admin, args.timeout)
            if n not in best or res["rate"] > best[n]["rate"]:
                best[n] = res
            if n == 1:
                last_one = res["rate"]
            else:
                pairs.append(res["rate"] / last_one)
            lost = sup.losses(s, run.prefix, run.db, log)
            problems += [f"{n} worker(s): {p}" for p in lost]
            print(f"  {n} worker(s): {res['rate']:8,.0f} rec/s from spawn ({res['total_s']:5.1f}s), "
                  f"{res['rate_first']:8,.0f} from the first write; CPU {sum(res['cpu']):5.1f}s "
                  f"({sum(res['cpu']) / res['total_s'] * 100:3.0f} % of one core); group: {res['members']}"
                  + ("; outputs checked: nothing lost" if not lost else f"; LOST: {lost}"), flush=True)
            stack_cpu = ", ".join(f"{k} {v:.1f}s" for k, v in res["stack_cpu"].items())
            others = res["busy"] - sum(res["cpu"]) - sum(res["stack_cpu"].values())
            print(f"     machine: {res['busy']:5.1f} CPU-s busy of {res['total_s'] * (os.cpu_count() or 1):5.1f} "
                  f"({os.cpu_count()} cores x {res['total_s']:.1f}s): workers {sum(res['cpu']):.1f}s, stack "
                  f"{stack_cpu}, other processes on the box {max(others, 0):.1f}s")
            if res["left"]:
                print(f"     NOTE: all records applied, but {sum(res['left'].values()):,} never committed "
                      f"({sorted(res['left'].items())}): a failed asynchronous commit, re-read after a restart")
            if skew := sup.lopsided(res["owned"]):
                print(f"     NOTE: partition counts balanced but not topics ({'; '.join(skew)}): the telemetry "
                      "agent reads GPS and sensors in one consumer and cooperative-sticky balances counts only")
            for i, owned in enumerate(res["owned"]):
                print(f"     worker {i + 1}: CPU {res['cpu'][i]:5.1f}s, peak RSS {res['rss'][i]:4.0f} MiB, "
                      f"partitions {sup.fmt_parts(owned)}")
        finally:
            run.cleanup(r)
    one, two = best[1], best[2]
    print(f"  two / one within each round (from spawn): {', '.join(f'{x:.2f}x' for x in pairs)}")
    print(f"  best of {args.scale_rounds} round(s): one {one['rate']:,.0f} rec/s, two {two['rate']:,.0f} rec/s")
    print(f"  two / one: {two['rate'] / one['rate']:.2f}x from spawn, {two['rate_first'] / one['rate_first']:.2f}x "
          f"from the first write; CPU per record two / one {sum(two['cpu']) / sum(one['cpu']):.2f}x")
    return problems


def steady_producer(bootstrap: str, run: Run, log: dict[str, list[SourceRecord]], rate: float,
                    stop: threading.Event) -> threading.Thread:
    """Send the log's topics interleaved in proportion, ``rate`` records/s in 20 ms slices."""
    from confluent_kafka import Producer

    from infra.services import quiet_client_config

    items = sorted(((i / len(recs), run.renames[t], rec) for t, recs in log.items() for i, rec in enumerate(recs)),
                   key=lambda x: x[0])

    def go() -> None:
        p = Producer({**quiet_client_config(bootstrap), "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "partitioner": "murmur2_random"})
        t0 = time.perf_counter()
        for i, (_, topic, rec) in enumerate(items):
            if stop.is_set():
                break
            if i % 50 == 0:
                time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            while True:
                try:
                    p.produce(topic, key=rec.key, value=rec.value)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        if p.flush(60) != 0:
            raise RuntimeError("producer: records unacknowledged after 60 s")

    t = threading.Thread(target=go, name="producer", daemon=True)
    t.start()
    return t


def phase_kill(s: Settings, log: dict[str, list[SourceRecord]], args: argparse.Namespace, r: Any,
               admin: Any, log_dir: Path) -> list[str]:
    total = sum(len(v) for v in log.values())
    rate = total / args.produce_s
    print(f"\nb. two workers while {total:,} records are produced at {rate:,.0f}/s for {args.produce_s:.0f}s; "
          f"kill -9 of one after {args.kill_after_s:.0f}s (session timeout {s.consumer_session_timeout_ms} ms)",
          flush=True)
    run = Run(s, "b", log_dir, args.agents, list(log))
    stop = threading.Event()
    workers = [sup.spawn_worker(f"{run.tag}-w{i + 1}", s, args.agents, run.env, log_dir) for i in range(2)]
    try:
        deadline = time.time() + 60
        while not all(sup.assignments(w.log_path, run.renames).owned for w in workers):
            if time.time() > deadline:
                raise RuntimeError(f"the two workers did not both get partitions in 60 s; logs in {log_dir}")
            time.sleep(0.2)
        producer = steady_producer(s.kafka_bootstrap, run, log, rate, stop)
        time.sleep(args.kill_after_s)
        victim, survivor = workers
        parts = sup.assignments(victim.log_path, run.renames).owned
        actual = {(run.renames[t], p) for t, p in parts}
        t_kill = time.time()
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(5)
        before = run.committed(admin)  # after the kill: only the survivor can move these now
        t_assigned = t_moving = None
        while t_moving is None or t_assigned is None:
            time.sleep(0.1)
            survivor.sample()
            if not survivor.alive():
                raise RuntimeError(f"the survivor exited with {survivor.proc.returncode}; log {survivor.log_path}")
            if time.time() - t_kill > 60:
                raise RuntimeError(f"no takeover within 60 s of the kill; survivor log {survivor.log_path}")
            got = sup.assignments(survivor.log_path, run.renames)
            if t_assigned is None and parts <= got.owned:
                t_assigned = max(t for t, sign, tp in got.events if sign == "+" and tp in parts)
            now = run.committed(admin)
            if t_moving is None and any(now.get(tp, -1) > before.get(tp, -1) for tp in actual):
                t_moving = time.time()
        failed = [sup.member_failed_at(s.stack_dir / "logs" / "kafka.log", g, t_kill - 1) for g in run.groups]
        t_failed = min((t for t in failed if t is not None), default=None)
        producer.join(args.produce_s * 3)
        t_drain = time.time()
        left = run.settle(admin, r, total, args.timeout, survivor.sample)
        survivor.sample()
        survivor.stop()
        if left:
            print(f"  NOTE: {sum(left.values()):,} records applied but not committed ({sorted(left.items())})")
        print(f"  killed worker 1 (pid {victim.proc.pid}) holding {sup.fmt_parts(parts)}")
        detect = f"{t_failed - t_kill:4.1f}s" if t_failed else "n/a (no broker log line)"
        print(f"  kill -> broker declares it dead (session timeout):   {detect}")
        print(f"  kill -> survivor assigned its partitions:             {t_assigned - t_kill:4.1f}s")
        print(f"  kill -> first commit past the kill on them (written): {t_moving - t_kill:4.1f}s "
              f"(polled every 0.1 s; target {TAKEOVER_TARGET_S:.0f}s: "
              f"{'met' if t_moving - t_kill <= TAKEOVER_TARGET_S else 'NOT met'})")
        print(f"  survivor drained the rest {time.time() - t_drain:4.1f}s after the producer finished; "
              f"CPU {survivor.cpu_s:5.1f}s, peak RSS {survivor.peak_rss_mb:4.0f} MiB", flush=True)
        lost = sup.losses(s, run.prefix, run.db, log)
        counted = sup.counters(r, run.prefix)
        checks = [text for topic, text in ((ORDER_EVENTS.name, "every order's view = the pure fold"),
                                           (GPS.name, "every van's newest position in Redis"),
                                           (GPS.name, "every GPS point in InfluxDB"),
                                           (SENSORS.name, "every sensor reading in InfluxDB")) if topic in log]
        print(f"  after the drain: {counted:,} records counted for {total:,} inputs "
              f"({counted - total:,} re-applied after the kill: at-least-once); "
              + (f"{', '.join(checks)}: nothing lost" if not lost else f"LOST: {lost}"))
        return [f"kill: {p}" for p in lost]
    finally:
        stop.set()
        for w in workers:
            w.stop()
        run.cleanup(r)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=3000)
    p.add_argument("--vans", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=25, help="GPS/sensor rounds (one every 10 s of event time)")
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--scale-rounds", type=int, default=2, help="phase a: rounds of one-then-two (best counts)")
    p.add_argument("--produce-s", type=float, default=30.0, help="phase b: how long the producer runs")
    p.add_argument("--kill-after-s", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--phases", default="scale,kill")
    p.add_argument("--agents", default=DEFAULT_AGENTS, help="orders, telemetry or both (the checked outputs)")
    p.add_argument("--profile", default="scale")
    args = p.parse_args(argv)
    import redis

    from infra import stack

    s = settings_mod.load(args.profile)
    started = not stack.is_healthy(args.profile)
    stack.ensure_started(args.profile, out=None)
    log_dir = s.stack_dir / "bench" / "scale"
    log_dir.mkdir(parents=True, exist_ok=True)
    r = redis.Redis.from_url(s.redis_url)
    admin = sup.admin_client(s.kafka_bootstrap)
    problems: list[str] = []
    try:
        agents = args.agents.split(",")
        if not agents or set(agents) - set(sup.INPUTS):
            raise SystemExit(f"--agents: choose from {', '.join(sup.INPUTS)}")
        wanted = {t for a in agents for t in sup.INPUTS[a]}
        log = {t: v for t, v in sup.city_log(args.orders, args.vans, args.rounds, args.devices).items() if t in wanted}
        counts = {t.removeprefix("kuailv.").removesuffix(".v1"): len(v) for t, v in log.items()}
        print(f"log: {counts} ({args.orders:,} orders, {args.vans:,} vans, {args.devices:,} sensors); "
              f"stack {s.profile} ({s.kafka_bootstrap}), {os.cpu_count()} cores; worker logs in {log_dir}")
        phases = args.phases.split(",")
        if "scale" in phases:
            problems += phase_scale(s, log, args, r, admin, log_dir)
        if "kill" in phases:
            problems += phase_kill(s, log, args, r, admin, log_dir)
    finally:
        r.close()
        if started:
            stack.stop(args.profile, out=None)
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    main()
