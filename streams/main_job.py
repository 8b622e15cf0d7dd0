"""``kuailv run`` / ``make run``: the main job on the local stack, end to end.

Starts worker(s) and the outbox relay as subprocesses, drives the
simulated city through the command side and Kafka, shows live progress
(events/s, orders per state, dead letters), waits until every event is
projected, prints a summary and one order as ``kuailv order`` shows it, then
stops the processes it started. The stack itself keeps running for queries
(``make stop`` stops it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from config.settings import Settings
from schemas.topics import (
    ALERTS,
    FLEET,
    GPS,
    KPI_CONTRIBUTIONS,
    KPI_EXPOSURES,
    ORDER_EVENTS,
    ORDER_STATE,
    SENSORS,
    STOCK,
)
from streams import model_probe
from streams.kafka_lag import end_offsets, group_lag
from streams.live_probe import LiveProbe
from streams.projection_builders import GEOFENCE_TOPICS
from streams.queries import (
    KINDS,
    alert_listing,
    alert_row,
    order_document,
    progress,
    redispatch_listing,
    redispatch_row,
)
from streams.simulation_runner import SimulationProgress, simulate_into_system

# (consumer group suffix, topics): every agent's group must have caught up before the run ends
GROUPS = (("", (ORDER_EVENTS.name,)), ("-telemetry", (GPS.name, SENSORS.name)), ("-geofences", GEOFENCE_TOPICS),
          ("-alerts", (ORDER_EVENTS.name, SENSORS.name)), ("-fleet", (FLEET.name,)),
          ("-audit", (ORDER_EVENTS.name,)),  # the audit worker (kuailv audit run) chains the order log
          ("-kpi-exposures", (ALERTS.name,)), ("-kpi-orders", (ORDER_STATE.name, KPI_EXPOSURES.name)),
          ("-kpis", (KPI_CONTRIBUTIONS.name,)),  # the KPI stages (docs/kpis.md)
          ("-stock", (STOCK.name,)))  # stock levels, low-stock alerts, replenishment (docs/stock.md)
STATUS_ORDER = ["CREATED", "PAID", "PICKING", "DELIVERING", "EXCEPTION_HANDLING", "SIGNED", "RETURNING", "RETURNED",
                "CLAIMING", "CLAIM_SETTLED", "OUT_OF_STOCK", "CANCELLED"]


def _spawn(args: list[str], settings: Settings, log_name: str) -> subprocess.Popen[bytes]:
    logs = settings.stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / log_name
    env = {**os.environ, "KUAILV_PROFILE": settings.profile}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def _since(stats: dict, base: dict) -> dict:
    """Counters of this run: the totals in Redis minus those before it started."""
    return {kind: {k: v - base[kind].get(k, 0) for k, v in stats[kind].items()} for kind in KINDS}


def _line(elapsed: float, sim: SimulationProgress, stats: dict, run: dict, rate: float) -> str:
    orders = run["orders"]
    tele = run["telemetry"]
    by_status = stats["by_status"]
    states = " ".join(f"{s}={by_status[s]}" for s in STATUS_ORDER if by_status.get(s))
    sim_clock = time.strftime("%m-%d %H:%M", time.gmtime(sim.sim_time_ms / 1000)) if sim.sim_time_ms else "--"
    dead = sum(run[kind].get("dead_letters", 0) for kind in KINDS)
    fences = run["geofences"].get("transitions_written", 0)
    alerts = run["alerts"].get("alerts_written", 0) + run["geofences"].get("alerts_written", 0)
    return (f"[{elapsed:6.1f}s] sim {sim_clock}Z | sent: {sim.commands} commands, {sim.telemetry} telemetry | "
            f"projected: {orders.get('records', 0)} order events, {tele.get('records', 0)} telemetry "
            f"({rate:,.0f} ev/s) | geofence transitions {fences} | alerts open {stats['open_alerts']} "
            f"({alerts} changes) | dead letters {dead} | orders now: {states}")


def run_main_job(settings: Settings, *, orders: int, seed: int, speedup: float, workers: int = 1) -> int:
    print(f"kuailv run: profile {settings.profile}, Kafka {settings.kafka_bootstrap}, Redis {settings.redis_url}, "
          f"InfluxDB {settings.influx_url}/{settings.influx_db}")
    print(model_probe.describe(settings))  # what the workers load at start-up (they refuse a mismatched model)
    procs = [_spawn(["worker", "--loglevel", "warning"], settings, f"worker-{i}.log") for i in range(workers)]
    procs.append(_spawn(["relay", "--interval", "0.2"], settings, "relay.log"))
    procs.append(_spawn(["serve"], settings, "api.log"))
    procs.append(_spawn(["webhooks", "run", "--loglevel", "warning"], settings, "webhooks.log"))
    procs.append(_spawn(["audit", "run", "--loglevel", "warning"], settings, "audit.log"))
    print(f"started {workers} worker(s), the outbox relay, the webhook delivery worker, the audit worker and the "
          f"API on "
          f"http://{settings.api_host}:{settings.api_port}"
          f" (kuailv serve); logs in {settings.stack_dir / 'logs'}")
    start_ends = sum(end_offsets(settings.kafka_bootstrap, [ORDER_EVENTS.name]).values())
    base = progress(settings)
    live = LiveProbe(settings).start()
    sim = SimulationProgress()
    stop = threading.Event()
    t0 = time.monotonic()
    failed = ""
    sim_thread = threading.Thread(target=simulate_into_system, daemon=True,
                                  kwargs={"settings": settings, "orders": orders, "seed": seed, "speedup": speedup,
                                          "progress": sim, "stop": stop})
    try:
        sim_thread.start()
        prev_count, prev_t = 0, time.monotonic()
        caught_up = False
        api_line = webhook_line = live_line = audit_line = model_line = ""
        deadline: float | None = None
        while True:
            time.sleep(1.0)
            stats = progress(settings)
            run = _since(stats, base)
            count = run["orders"].get("records", 0) + run["telemetry"].get("records", 0)
            now = time.monotonic()
            rate = (count - prev_count) / (now - prev_t)
            prev_count, prev_t = count, now
            print(_line(now - t0, sim, stats, run, rate), flush=True)
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                failed = f"process exited early: {dead}; see {settings.stack_dir / 'logs'}"
                break
            if sim.done and not sim_thread.is_alive():
                deadline = deadline or now + 180
                published = sum(end_offsets(settings.kafka_bootstrap, [ORDER_EVENTS.name]).values()) - start_ends
                if published >= sim.commands and all(
                        group_lag(settings.kafka_bootstrap, settings.consumer_group + suffix, topics) == 0
                        for suffix, topics in GROUPS):
                    caught_up = True
                    api_line, api_ok = _probe_api(settings, sim.order_ids)
                    webhook_line = _probe_webhooks(settings)
                    live_line = live.stop()
                    audit_line, audit_ok = _probe_audit(settings)
                    model_line = "\n".join([model_probe.summary(settings, sim.order_ids),
                                             model_probe.kpi_summary(settings, sim.order_ids),
                                             model_probe.stock_summary(settings)])
                    if not audit_ok:
                        failed = audit_line
                    if not api_ok:
                        failed = api_line
                    break
                if now > deadline:
                    failed = "workers did not catch up within 180 s after the simulation ended"
                    break
    except KeyboardInterrupt:
        failed = "interrupted"
        stop.set()
    finally:
        live.stop()
        _stop(procs)
    elapsed = time.monotonic() - t0
    stats = progress(settings)
    print()
    print(f"simulated {len(sim.order_ids)} orders in {elapsed:.1f}s: {sim.commands} order commands, "
          f"{sim.telemetry} telemetry records (GPS, sensors, road conditions, stock movements), "
          f"{sim.refused} commands refused")
    run = _since(stats, base)
    print(f"this run: {json.dumps(run, sort_keys=True)}")
    print(f"orders on this stack now, by status: {json.dumps(stats['by_status'], sort_keys=True)}")
    if caught_up:
        print(api_line)
        print(webhook_line)
        print(live_line)
        print(audit_line)
        print(model_line)
    open_alerts = alert_listing(settings, open_only=True, limit=8)
    if open_alerts:
        print(f"\n$ kuailv alerts --open   ({stats['open_alerts']} open; newest {len(open_alerts)})")
        for a in open_alerts:
            print("  " + alert_row(a))
    suggestions = redispatch_listing(settings, limit=5)
    if suggestions:
        print("\nre-dispatch suggestions after incidents (newest first):")
        for sug in suggestions:
            print("  " + redispatch_row(sug))
    if sim.order_ids:
        example = _pick_example(settings, sim.order_ids)
        if example:
            print(f"\n$ kuailv order {example['orderId']}")
            print(json.dumps(example, ensure_ascii=False, indent=2))
    if failed or not caught_up:
        print(f"\nFAILED: {failed or 'not caught up'}", file=sys.stderr)
        return 1
    print("\nThe stack is still running: try `.venv/bin/kuailv orders --status SIGNED`, "
          "`.venv/bin/kuailv replay --topic`, or the API: `.venv/bin/kuailv serve` and "
          "`curl -H \"Authorization: Bearer $(.venv/bin/kuailv token --role operator)\" "
          f"http://{settings.api_host}:{settings.api_port}/orders/<id>`; the dashboard: `.venv/bin/kuailv serve` and "
          "open the URL `.venv/bin/kuailv token --role operator --url` prints; stop it with `make stop`.")
    return 0


def _probe_api(settings: Settings, order_ids: list[str]) -> tuple[str, bool]:
    """One authenticated read through the running API (the service people use), as a smoke test."""
    import urllib.error
    import urllib.request

    from service.auth import issue

    if not order_ids:
        return "API: no order to read", True
    url = f"http://{settings.api_host}:{settings.api_port}/orders/{order_ids[0]}"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + issue(settings.api_secret, "kuailv-run",
                                                                                   "operator")})
    t0 = time.monotonic()
    for _ in range(20):  # the server may still be starting
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return f"API: GET {url} -> {resp.status} in {(time.monotonic() - t0) * 1000:.0f} ms", True
        except urllib.error.HTTPError as exc:
            return f"API: GET {url} -> {exc.code}: {exc.read()[:200]!r}", False
        except OSError:
            time.sleep(0.5)
    return f"API: nothing listening at {url} (see {settings.stack_dir / 'logs' / 'api.log'})", False


def _probe_audit(settings: Settings) -> tuple[str, bool]:
    """Verify every audit chain as ``kuailv audit verify`` does: entries, chains, intact or the first break."""
    from audit.chain import Keys
    from audit.store import AuditStore

    store = AuditStore.from_url(settings.audit_store, Keys.parse(settings.audit_hmac_keys))
    try:
        verdicts = [store.verify(chain) for chain in store.chains()]
    finally:
        store.close()
    broken = [v for v in verdicts if not v.ok]
    entries = sum(v.checked for v in verdicts)
    if broken:
        b = broken[0]
        return f"audit: chain {b.chain} BROKEN after {b.checked} entries: {b.broken}", False
    return (f"audit: {entries:,} entries in {len(verdicts)} hash chains, all intact "
            f"(kuailv audit verify; store {settings.audit_store})"), True


def _probe_webhooks(settings: Settings, wait_s: float = 60.0) -> str:
    """What the delivery worker did this run: its group caught up on the alert and order-state topics, the
    subscriptions it serves, its delivery counters (from its own /metrics)."""
    import urllib.request

    from schemas.topics import ALERTS, ORDER_STATE
    from webhooks.store import WebhookStore
    from webhooks.worker import group_of

    group, topics = group_of(settings), [ALERTS.name, ORDER_STATE.name]
    deadline = time.monotonic() + wait_s
    while (lag := group_lag(settings.kafka_bootstrap, group, topics)) and time.monotonic() < deadline:
        time.sleep(0.5)
    store = WebhookStore.from_url(settings.webhooks.store_url)
    try:
        counts = store.counts()
    finally:
        store.close()
    w = settings.webhooks
    url = f"http://{w.metrics_host}:{w.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        sent = {o: _counter(text, f'kuailv_webhook_deliveries_total{{outcome="{o}"}}')
                for o in ("delivered", "failed", "timeout")}
        attempts = f"{sent['delivered']:.0f} delivered, {sent['failed'] + sent['timeout']:.0f} failed attempts"
    except OSError as exc:
        attempts = f"metrics not read ({url}: {exc})"
    return (f"webhooks: delivery worker ran (group {group}, lag {lag} on {' + '.join(topics)}); "
            f"{counts.get('subscriptions.active', 0)} active subscription(s); this run: {attempts}; outbox "
            f"{counts.get('deliveries.pending', 0)} pending, {counts.get('deliveries.dead', 0)} dead letters "
            f"(store {store.describe})")


def _counter(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _pick_example(settings: Settings, order_ids: list[str]) -> dict | None:
    """A re-dispatched or delivered order makes the best example (driver, location, items)."""
    docs = [d for d in (order_document(settings, oid) for oid in order_ids[:200]) if d]
    for want in (lambda d: d["dispatchCount"] > 1, lambda d: d["driverInfo"] is not None, lambda d: True):
        for d in docs:
            if want(d):
                return d
    return None
