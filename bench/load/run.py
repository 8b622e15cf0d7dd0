"""``make load`` / ``python -m bench.load``: the city-scale load test on the live ``load`` stack.

    python -m bench.load [--rate 5000] [--steady-s 600] [--burst-factor 3] [--burst-s 60] [--drain-max-s 300]
                         [--clients 1000] [--workers 2] [--out docs/load]

Starts the ``load`` stack if it is not running (and stops it after, then only), the pipeline as
production runs it (``kuailv worker`` x ``--workers``, ``kuailv serve``, ``kuailv webhooks run``) in a
fresh consumer group and Redis prefix, a webhook subscription (through the API) to a loopback receiver,
the WebSocket clients and the order readers; then produces the city (``bench.load.city_traffic``) with
event time = wall clock, samples every second, probes latencies, drains, and writes the report
(``bench.load.report``). Exit status 1 only if the pipeline broke (a process died, nothing applied):
a missed target is a finding, FAIL in the report. See docs/load.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import feed
from bench.load.city_traffic import customer_id, order_id
from bench.load.clients import WebSocketClients, read_process
from bench.load.mix import Schedule, city_mix
from bench.load.probes import PROBE_CUSTOMER, alert_results, run_probes, watch_alerts
from bench.load.processes import ROOT, Pipeline, port_or_free
from bench.load.sampler import LagReader, Sampler, consumer_groups
from bench.load.stats import drained_at

SECRET = "l" * 40


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=5000.0, help="steady events/s (the city scales with it)")
    p.add_argument("--steady-s", type=float, default=600.0)
    p.add_argument("--burst-factor", type=float, default=3.0)
    p.add_argument("--burst-s", type=float, default=60.0)
    p.add_argument("--drain-max-s", type=float, default=300.0)
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients (0: none)")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--followed", type=int, default=100, help="customers the clients follow (of 4,000)")
    p.add_argument("--workers", type=int, default=2, help="kuailv worker processes (2: one per core here)")
    p.add_argument("--read-rate", type=float, default=50.0, help="GET /orders/{id} per second (open loop)")
    p.add_argument("--probe-rate", type=float, default=4.0, help="probe order events per second")
    p.add_argument("--gps-probe-rate", type=float, default=2.0, help="probe GPS pings per second")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "load")
    p.add_argument("--profile", default="load")
    return p.parse_args(argv)


def api(port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    resp = httpx.request(method, f"http://127.0.0.1:{port}{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    if resp.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
    return resp.json() if resp.content else None


def cleanup_redis(redis_url: str, prefix: str) -> None:
    import redis

    from bench.private_stores import drop_redis_prefix

    drop_redis_prefix(redis.Redis.from_url(redis_url), prefix)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        from config import settings as settings_mod

        self.args = args
        self.s = settings_mod.load(args.profile)
        self.tag = uuid.uuid4().hex[:6]
        self.group, self.prefix = f"kuailv-load-{self.tag}", f"load{self.tag}"
        self.hook_store = self.s.stack_dir / f"load-{self.tag}.webhooks.sqlite"
        self.port = port_or_free(self.s.api_port)
        env = {"KUAILV_PROFILE": args.profile, "KUAILV_API_PORT": str(self.port),
               "KUAILV_WEBHOOK_METRICS_PORT": str(port_or_free(self.s.webhooks.metrics_port)),
               "KUAILV_CONSUMER_GROUP": self.group, "KUAILV_REDIS_PREFIX": self.prefix,
               "KUAILV_API_SECRET": SECRET, "KUAILV_WEBHOOK_STORE": f"sqlite:///{self.hook_store}"}
        self.pipeline = Pipeline(args.profile, env, self.s.stack_dir / "logs" / f"load-{self.tag}")
        self.ctx = multiprocessing.get_context("spawn")
        self.children: dict[str, Any] = {}  # harness processes: name -> multiprocessing.Process
        self.problems: list[str] = []
        self.lag: LagReader | None = None
        from infra import stack

        # the stack's servers too: Redis is single-threaded, and the workers' batch scripts run in it
        self.stack_pids = {st.name: st.pid for st in stack.status(args.profile) if st.pid is not None}

    def child(self, name: str, target: Any, *args: Any) -> Any:
        proc = self.ctx.Process(target=target, args=args, daemon=True, name=name)
        proc.start()
        self.children[name] = proc
        return proc

    def pids(self) -> dict[str, int]:
        out = dict(self.stack_pids)
        out.update(self.pipeline.pids())
        out.update({n: p.pid for n, p in self.children.items() if p.pid is not None and p.is_alive()})
        return out

    def execute(self) -> dict[str, Any]:
        a, s = self.args, self.s
        from service.auth import issue

        mix, schedule = city_mix(a.rate), Schedule(a.steady_s, a.burst_s, a.burst_factor)
        self.lag = lag = LagReader(s.kafka_bootstrap, consumer_groups(self.group))
        lag.commit_ends()
        for i in range(a.workers):
            self.pipeline.start(f"worker-{i + 1}", "worker")
        self.pipeline.start("serve", "serve")
        self.pipeline.start("webhooks", "webhooks", "run")
        port = self.port
        self.pipeline.wait_http(f"http://127.0.0.1:{port}/healthz", "serve")
        here, there = self.ctx.Pipe()
        self.child("probes", run_probes, s.kafka_bootstrap, s.redis_url, self.prefix, self.tag, a.probe_rate,
                   a.gps_probe_rate, there)
        if not here.poll(60):
            raise RuntimeError("the probes did not start within 60 s")
        hook_url = here.recv()
        watch_here, watch_there = self.ctx.Pipe()
        self.child("alert-watch", watch_alerts, s.kafka_bootstrap, self.tag, watch_there)
        if not watch_here.poll(60):
            raise RuntimeError("the alert watcher did not start within 60 s")
        watch_here.recv()
        operator = issue(SECRET, "load-operator", "operator")
        sub = api(port, "POST", "/webhooks/subscriptions", operator,
                  {"url": hook_url, "description": f"load test {self.tag}",
                   "filters": {"kinds": ["alert"], "customer_id": PROBE_CUSTOMER}})
        self.sub_id = sub["id"]
        self.operator = operator
        customers = [customer_id(i) for i in range(a.followed)]
        ws = None
        if a.clients:
            tokens = {c: issue(SECRET, f"load-{c}", "merchant", c) for c in customers}
            ws = WebSocketClients(port, customers, tokens, a.clients, a.client_procs)
            for i, pid in enumerate(ws.pids()):
                self.children[f"ws-clients-{i + 1}"] = next(c for c in ws.children if c.pid == pid)
            print(f"{a.clients:,} WebSocket clients connected in {ws.connect_s:.1f} s")
        counts = self.ctx.RawArray("q", len(feed.TOPICS))
        state = self.ctx.RawArray("d", 2)
        sampler = Sampler(lag, _redis(s.redis_url), self.prefix,
                          lambda: {feed.TOPICS_KEYS[i]: counts[i] for i in range(len(feed.TOPICS))}, self.pids,
                          lambda: state[0])
        queue = self.ctx.Queue(maxsize=feed.AHEAD_CHUNKS)
        t0 = time.time() + 8.0  # the generator's start-up (imports, the first seconds encoded)
        self.child("generator", feed.generate, mix, schedule, int(t0 * 1000), a.followed, queue)
        prod_here, prod_there = self.ctx.Pipe()
        self.child("producer", feed.produce, s.kafka_bootstrap, t0, queue, counts, state, prod_there)
        sampler.start()
        time.sleep(max(t0 - time.time(), 0))
        here.send("start")
        print(f"producing from {datetime.fromtimestamp(t0, UTC):%H:%M:%S} UTC: {a.rate:,.0f}/s for "
              f"{a.steady_s:,.0f} s, {a.burst_factor:g}x for {a.burst_s:,.0f} s "
              f"(group {self.group}, prefix {self.prefix})")
        read_here = None
        read_ids = [order_id(n) for n in range(max(int(mix.orders_per_s * 60), 20))]  # the first minute's orders
        produce_end = t0 + schedule.wall_s
        next_print = t0 + 10
        while True:
            now = time.time()
            if read_here is None and now > t0 + 15:
                read_here, read_there = self.ctx.Pipe()
                self.child("reader", read_process, port, read_ids, operator, a.read_rate, 10.0, a.profile,
                           self.prefix, read_there)
            if state[1] >= 1.0 and now >= produce_end:
                break
            if dead := self.pipeline.dead():
                self.problems += dead
                break
            if now >= next_print:
                next_print += 10
                self.progress(sampler, now - t0, state[0])
            if now > produce_end + 120:
                self.problems.append("the producer did not finish within 120 s of the schedule")
                break
            time.sleep(0.5)
        print(f"production done at +{time.time() - t0:,.0f} s; draining (cap {a.drain_max_s:,.0f} s)")
        drained = None
        while not self.problems and time.time() < produce_end + a.drain_max_s:
            if (drained := drained_at(sampler.samples[-3:], produce_end)) is not None:
                break
            if dead := self.pipeline.dead():
                self.problems += dead
            if time.time() >= next_print:
                next_print += 10
                self.progress(sampler, time.time() - t0, state[0])
            time.sleep(1)
        end = time.time()
        print("drained: " + (f"yes, {drained - produce_end:,.0f} s after production" if drained else "no"))
        here.send("stop")
        raw = here.recv() if here.poll(60) else {"visible": [], "alert_due": {}, "arrived": {}, "webhook_requests": 0}
        watch_here.send("stop")
        seen = watch_here.recv() if watch_here.poll(30) else {}
        alerts, hooks = alert_results(raw["alert_due"], seen, raw["arrived"])
        probes = {"visible": raw["visible"], "alert": alerts, "webhook": hooks,
                  "webhook_requests": raw["webhook_requests"]}
        reads: list[dict[str, Any]] = []
        if read_here is not None:
            read_here.send("stop")
            reads = read_here.recv() if read_here.poll(60) else []
        prod_here.send("stop")
        sent = prod_here.recv() if prod_here.poll(60) else {}
        mono_to_wall = time.time() - time.monotonic()
        delays, received = [], 0
        if ws is not None:
            got = ws.collect()
            received = len(got)
            delays = [(round(t + mono_to_wall, 3), round((t - sent[(o, v)]) * 1000, 2)) for o, v, t in got
                      if (o, v) in sent]
        sampler.stop.set()
        sampler.join(10)
        applied = sampler.samples[-1]["applied"]["orders"].get("applied", 0) if sampler.samples else 0
        if not applied:
            self.problems.append("the orders agent applied nothing")
        return {"meta": {"started": datetime.fromtimestamp(t0, UTC).strftime("%Y-%m-%d %H:%M UTC"),
                         "argv": shlex.join(sys.argv[1:]), "rate": a.rate, "steady_s": a.steady_s,
                         "burst_s": a.burst_s, "burst_factor": a.burst_factor, "drain_max_s": a.drain_max_s,
                         "workers": a.workers, "clients": a.clients, "read_rate": a.read_rate, "read_window_s": 10.0,
                         "mix": {k: getattr(mix, k) for k in mix.__slots__}, "t0": t0, "end": end, "tag": self.tag,
                         "ws_connect_s": ws.connect_s if ws else None, "problems": self.problems},
                "samples": sampler.samples, "probes": probes, "reads": reads,
                "ws": {"delays": delays, "received": received, "versions_sent": len(sent), "clients": a.clients}}

    @staticmethod
    def progress(sampler: Sampler, at: float, behind: float) -> None:
        if len(sampler.samples) < 11:
            return
        a, b = sampler.samples[-11], sampler.samples[-1]
        dt = b["t"] - a["t"]
        produced = (sum(b["produced"].values()) - sum(a["produced"].values())) / dt
        applied = {k: (b["applied"][k].get("records", 0) - a["applied"][k].get("records", 0)) / dt
                   for k in ("orders", "telemetry", "geofences", "alerts")}
        lag = sum((b["lag"] or {}).values())
        rss = max((u["rss_mib"] for n, u in b["procs"].items() if n.startswith("worker") and isinstance(u, dict)),
                  default=0)
        print(f"  +{at:5.0f}s produced {produced:7,.0f}/s  consumed " +
              " ".join(f"{k} {v:,.0f}/s" for k, v in applied.items()) +
              f"  lag {lag:,}  worker RSS {rss:,.0f} MiB  producer behind {behind * 1000:,.0f} ms", flush=True)

    def close(self) -> None:
        for name, proc in self.children.items():
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
                if proc.is_alive():
                    print(f"killing {name} (pid {proc.pid})")
                    proc.kill()
        if getattr(self, "sub_id", None) and self.pipeline.procs.get("serve") and \
                self.pipeline.procs["serve"].poll() is None:
            try:
                api(self.port, "DELETE", f"/webhooks/subscriptions/{self.sub_id}", self.operator)
            except Exception as exc:  # the store is this run's own file, removed below anyway
                print(f"subscription not deleted: {exc}")
        self.pipeline.stop()
        if self.lag is not None:
            self.lag.delete_groups()
        cleanup_redis(self.s.redis_url, self.prefix)
        for leftover in self.hook_store.parent.glob(self.hook_store.name + "*"):
            leftover.unlink()


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from bench.load import report
    from infra import stack

    # SIGTERM, and SIGINT even when started in the background (a non-interactive shell ignores SIGINT for
    # background jobs), stop the run through the cleanup below: every child stopped by PID, the run's groups
    # and keys deleted
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started = not stack.is_healthy(args.profile)
    stack.ensure_started(args.profile)
    run = Run(args)
    try:
        try:
            results = run.execute()
        finally:
            run.close()
        index = report.write(results, args.out)
        print()
        for row in report.figures(results):
            verdict = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
            print(f"{verdict:4}  {row['figure']}: {row['value']}  [{row['target']}]  {row['baseline']}")
        print(f"\nreport: {index}")
        if results["meta"]["problems"]:
            print("PIPELINE BROKE: " + "; ".join(results["meta"]["problems"]), file=sys.stderr)
            return 1
        return 0
    finally:
        if started:
            stack.stop(args.profile)
