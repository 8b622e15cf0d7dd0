"""The load test's report: ``index.md`` (figures, targets, pass/fail), four PNGs, the raw samples.

``figures(results)`` is pure (the table's rows); ``write(results, out_dir)`` renders the plots with
matplotlib's Agg backend and writes the files.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from bench.load.city_traffic import RAMP_S
from bench.load.stats import cpu_share, drained_at, latencies, mean_rate, pct, rates, windows
from streams.worker import AGENTS

# agent -> the produced topics it consumes (its consumed rate is compared with their produced rate)
AGENT_INPUTS = {"orders": ("order_events",), "telemetry": ("gps", "sensors"), "geofences": ("gps",),
                "alerts": ("order_events", "sensors"), "stock": ("stock",)}
SPAN = 5  # seconds of the plots' moving rates
TOPIC_KEYS = {"kuailv.gps.v1": "gps", "kuailv.sensors.v1": "sensors", "kuailv.order-events.v1": "order_events",
              "kuailv.stock.v1": "stock"}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _in(points: list[tuple[float, float]], lo: float, hi: float) -> list[float]:
    return [v for t, v in points if lo <= t < hi]


def _drain(at: float | None, produce_end: float, m: dict[str, Any]) -> str:
    return f"drained {at - produce_end:,.0f} s after the burst" if at is not None else \
        f"NOT drained within {m['drain_max_s']:,.0f} s"


def _lat_row(name: str, samples: list[dict[str, Any]], target_ms: float, steady_end: float,
             baseline: str = "") -> dict[str, Any]:
    seen, missing = latencies(samples)
    steady = [s["ms"] for s in samples if s["ms"] is not None and s["t"] < steady_end]
    p99 = pct(seen, 0.99)
    return {"figure": name, "target": f"p99 < {target_ms:,.0f} ms",
            "value": f"p50 {pct(seen, 0.5):,.1f} / p99 {p99:,.1f} ms (n={len(seen):,}, missing {missing}); "
                     f"steady phase p99 {pct(steady, 0.99):,.1f} ms",
            "baseline": baseline, "pass": bool(seen) and missing == 0 and p99 < target_ms}


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's rows: figure, target, measured value, baseline/ratio, pass (None: no target)."""
    m, samples = r["meta"], r["samples"]
    t0, steady_end, produce_end = m["t0"], m["t0"] + m["steady_s"], m["t0"] + m["steady_s"] + m["burst_s"]
    rows: list[dict[str, Any]] = []
    steady_from = t0 + (RAMP_S if m["steady_s"] > 2 * RAMP_S else 0)  # the order stream at its full rate
    prod_steady = {k: mean_rate(samples, ("produced", k), steady_from, steady_end) for k in TOPIC_KEYS.values()}
    prod_burst = {k: mean_rate(samples, ("produced", k), steady_end, produce_end) for k in TOPIC_KEYS.values()}
    total_steady, total_burst = sum(prod_steady.values()), sum(prod_burst.values())
    rows.append({"figure": "produced, steady / burst", "target": f"{m['rate']:,.0f} / "
                 f"{m['rate'] * m['burst_factor']:,.0f} events/s",
                 "value": f"{total_steady:,.0f} / {total_burst:,.0f} events/s",
                 "baseline": f"producer at most {max((s.get('behind_ms', 0) for s in samples), default=0):,.0f} ms "
                             "behind its schedule", "pass": None})
    for agent, inputs in AGENT_INPUTS.items():
        path = ("applied", agent, "records")
        steady = mean_rate(samples, path, steady_from, steady_end)
        burst = mean_rate(samples, path, steady_end, produce_end)
        want_s = sum(prod_steady[k] for k in inputs)
        want_b = sum(prod_burst[k] for k in inputs)
        rows.append({"figure": f"agent {agent}: records consumed/s, steady / burst",
                     "target": "= its inputs' produced rate",
                     "value": f"{steady:,.0f} / {burst:,.0f}",
                     "baseline": f"{steady / want_s if want_s else float('nan'):.2f}x / "
                                 f"{burst / want_b if want_b else float('nan'):.2f}x of {want_s:,.0f} / "
                                 f"{want_b:,.0f} produced", "pass": None})
    lags = [(s["t"], sum(s["lag"].values())) for s in samples if s.get("lag")]
    drained = drained_at(samples, produce_end)
    rows.append({"figure": "consumer lag, all groups", "target": "bounded; drains after the burst",
                 "value": f"max {max(_in(lags, t0, steady_end), default=0):,} records in the steady phase, "
                          f"{max((v for _, v in lags), default=0):,} overall; " + _drain(drained, produce_end, m),
                 "baseline": "", "pass": drained is not None})
    groups = sorted({g for s in samples if s.get("lag") for g in s["lag"]})
    base = min(groups, key=len) if groups else ""
    for g in groups:
        lag_g = [(s["t"], s["lag"][g]) for s in samples if s.get("lag") and g in s["lag"]]
        at = drained_at(samples, produce_end, group=g)
        rows.append({"figure": f"lag of {g.removeprefix(base) or 'the base group (orders, telemetry)'}",
                     "target": "", "value": f"max {max(_in(lag_g, t0, steady_end), default=0):,} steady, "
                                            f"{max((v for _, v in lag_g), default=0):,} overall; "
                                            + _drain(at, produce_end, m), "baseline": "", "pass": None})
    p = r["probes"]
    rtt = [s["rtt_ms"] for s in p["visible"] if s.get("rtt_ms") is not None]
    base = f"Redis round trip p50 {pct(rtt, 0.5):.2f} ms"
    rows.append(_lat_row("order event produced -> visible in Redis",
                         [s for s in p["visible"] if s["kind"] == "order"], 100, steady_end, base))
    rows.append(_lat_row("GPS ping produced -> van position in Redis",
                         [s for s in p["visible"] if s["kind"] == "gps"], 100, steady_end, base))
    rows.append(_lat_row("alert condition -> alert record", p["alert"], 1000, steady_end))
    rows.append(_lat_row("alert record -> webhook received", p["webhook"], 2000, steady_end,
                         f"{p.get('webhook_requests', 0):,} requests received"))
    rss = [(u["rss_mib"]) for s in samples for name, u in (s.get("procs") or {}).items()
           if name.startswith("worker") and isinstance(u, dict)]
    rows.append({"figure": "worker RSS (each process tree)", "target": "< 500 MB",
                 "value": f"max {max(rss, default=float('nan')):,.0f} MiB", "baseline": "",
                 "pass": bool(rss) and max(rss) * 1.048576 < 500})
    reads = [x for w in r["reads"] for x in w["ms"]]
    bare = [x for w in r["reads"] for x in w["bare_ms"]]
    errors = sum(w["errors"] for w in r["reads"])
    rows.append({"figure": f"GET /orders/{{id}} at {m['read_rate']:,.0f}/s (open loop)", "target": "p99 < 20 ms",
                 "value": f"p50 {pct(reads, 0.5):.1f} / p99 {pct(reads, 0.99):.1f} ms (n={len(reads):,}, "
                          f"errors {errors})",
                 "baseline": f"bare Redis read p50 {pct(bare, 0.5):.2f} / p99 {pct(bare, 0.99):.2f} ms: "
                             f"p99 {pct(reads, 0.99) / pct(bare, 0.99):.1f}x",
                 "pass": bool(reads) and errors == 0 and pct(reads, 0.99) < 20})
    ws = r["ws"]
    delays = [d for _, d in ws["delays"]]
    rows.append({"figure": f"change -> WebSocket client ({ws['clients']:,} clients)", "target": "p99 < 500 ms",
                 "value": f"p50 {pct(delays, 0.5):,.1f} / p99 {pct(delays, 0.99):,.1f} ms "
                          f"(n={len(delays):,} of {ws['received']:,} received)",
                 "baseline": "from the produce call of the order event (through the worker)",
                 "pass": bool(delays) and pct(delays, 0.99) < 500})
    return rows


def cpu_rows(r: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(process, mean cores steady, mean cores burst, max RSS MiB) per process."""
    m, samples = r["meta"], r["samples"]
    t0, steady_end, produce_end = m["t0"], m["t0"] + m["steady_s"], m["t0"] + m["steady_s"] + m["burst_s"]
    names = sorted({n for s in samples for n, u in (s.get("procs") or {}).items() if isinstance(u, dict)})
    out = []
    for name in names:
        c = cpu_share(samples, name)
        rss = [u["rss_mib"] for s in samples if isinstance(u := (s.get("procs") or {}).get(name), dict)]
        out.append((name, _mean(_in(c, t0 + 5, steady_end)), _mean(_in(c, steady_end + 2, produce_end)),
                    max(rss, default=float("nan"))))
    return out


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    rows = figures(r)
    lines = [f"# Load test report ({m['started']})", "",
             f"`python -m bench.load {m['argv']}` on this machine: {m['rate']:,.0f} events/s for "
             f"{m['steady_s']:,.0f} s, then {m['burst_factor']:g}x for {m['burst_s']:,.0f} s, then drain "
             f"(cap {m['drain_max_s']:,.0f} s); {m['workers']} worker process(es), {m['clients']:,} WebSocket "
             f"clients, the `load` stack. City: {m['mix']['vans']:,} vans; per second "
             f"{m['mix']['gps_per_s']:,.0f} GPS, {m['mix']['sensors_per_s']:,.0f} sensor readings, "
             f"{m['mix']['order_events_per_s']:,.0f} order events ({m['mix']['orders_per_s']:,.1f} orders), "
             f"{m['mix']['stock_per_s']:,.0f} stock movements (docs/load.md).", "",
             "| figure | target | measured | baseline / ratio (same run) | result |", "|---|---|---|---|---|"]
    for row in rows:
        verdict = "" if row["pass"] is None else ("PASS" if row["pass"] else "**FAIL**")
        lines.append(f"| {row['figure']} | {row['target']} | {row['value']} | {row['baseline']} | {verdict} |")
    lines += ["", "CPU (cores, mean) and peak RSS of each process tree:", "",
              "| process | cores, steady | cores, burst | peak RSS MiB |", "|---|---|---|---|"]
    for name, steady, burst, rss in cpu_rows(r):
        lines.append(f"| {name} | {steady:.2f} | {burst:.2f} | {rss:,.0f} |")
    if m.get("problems"):
        lines += ["", "Problems: " + "; ".join(m["problems"])]
    lines += ["", "![throughput](throughput.png)", "", "![consumer lag](lag.png)", "", "![latency](latency.png)",
              "", "![RSS and CPU](resources.png)", "",
              "Raw samples: `samples.json.gz` (every 1 s sample, every probe, every read window, every "
              "WebSocket delay with its wall time).", ""]
    return "\n".join(lines)


def plots(r: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, samples = r["meta"], r["samples"]
    t0 = m["t0"]
    burst = (m["steady_s"], m["steady_s"] + m["burst_s"])

    def shade(ax: Any) -> None:
        ax.axvspan(*burst, color="orange", alpha=0.15, label="burst")
        ax.set_xlabel("seconds since the load started")
        ax.grid(alpha=0.3)

    def xy(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        return [t - t0 for t, _ in points], [v for _, v in points]

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    tot: dict[float, float] = {}
    for k in TOPIC_KEYS.values():
        pts = rates(samples, ("produced", k), SPAN)
        for t, v in pts:
            tot[t] = tot.get(t, 0) + v
        a1.plot(*xy(pts), label=f"produced {k}", lw=1)
    a1.plot(*xy(sorted(tot.items())), label="produced, all", color="black", lw=1.5)
    a1.set_ylabel("events/s")
    a1.set_title(f"Produced per topic ({SPAN} s moving rate)")
    for agent in AGENTS:
        a2.plot(*xy(rates(samples, ("applied", agent, "records"), SPAN)), label=agent, lw=1)
    a2.set_ylabel("records/s")
    a2.set_title(f"Consumed by each worker agent (counters in Redis, {SPAN} s moving rate)")
    for ax in (a1, a2):
        shade(ax)
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 5))
    groups = sorted({g for s in samples if s.get("lag") for g in s["lag"]})
    for g in groups:
        ax.plot(*xy([(s["t"], s["lag"][g]) for s in samples if s.get("lag") and g in s["lag"]]), label=g, lw=1)
    ax.set_ylabel("records not committed")
    ax.set_title("Consumer lag per group")
    shade(ax)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=90)
    plt.close(fig)

    p = r["probes"]
    series = [("order -> Redis", [(s["t"], s["ms"]) for s in p["visible"] if s["kind"] == "order" and s["ms"]], 100),
              ("GPS -> Redis", [(s["t"], s["ms"]) for s in p["visible"] if s["kind"] == "gps" and s["ms"]], 100),
              ("alert condition -> alert record", [(s["t"], s["ms"]) for s in p["alert"] if s["ms"]], 1000),
              ("alert -> webhook", [(s["t"], s["ms"]) for s in p["webhook"] if s["ms"]], 2000),
              ("GET /orders/{id}", [(w["t"] + i / max(len(w["ms"]), 1) * m["read_window_s"], x)
                                    for w in r["reads"] for i, x in enumerate(w["ms"])], 20),
              ("change -> WebSocket client", list(r["ws"]["delays"]), 500)]
    fig, axes = plt.subplots(3, 2, figsize=(12, 10), sharex=True)
    for ax, (name, pts, target) in zip(axes.flat, series, strict=True):
        w = windows(pts, t0, 10.0)
        floor = 0.01  # log scale: a delay at or below 0 (clocks of two threads) shows at the floor
        ax.plot([x for x, _, _ in w], [max(q[0], floor) for _, q, _ in w], label="p50", marker=".", lw=1)
        ax.plot([x for x, _, _ in w], [max(q[1], floor) for _, q, _ in w], label="p99", marker=".", lw=1)
        ax.axhline(target, color="red", ls="--", lw=1, label=f"target {target} ms")
        ax.set_yscale("log")
        ax.set_ylabel("ms (per 10 s window)")
        ax.set_title(name, fontsize=10)
        shade(ax)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    names = sorted({n for s in samples for n, u in (s.get("procs") or {}).items() if isinstance(u, dict)})
    for name in names:
        a1.plot(*xy([(s["t"], u["rss_mib"]) for s in samples
                     if isinstance(u := (s.get("procs") or {}).get(name), dict)]), label=name, lw=1)
        a2.plot(*xy(cpu_share(samples, name)), label=name, lw=1)
    a1.axhline(500 / 1.048576, color="red", ls="--", lw=1, label="500 MB (worker target)")
    a1.set_ylabel("RSS MiB")
    a1.set_title("Memory of each process tree")
    a2.set_ylabel("cores")
    a2.set_title("CPU of each process tree (the machine has 2 cores)")
    for ax in (a1, a2):
        shade(ax)
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "resources.png", dpi=90)
    plt.close(fig)


def write(r: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots(r, out)
    (out / "index.md").write_text(markdown(r))
    with gzip.open(out / "samples.json.gz", "wb") as f:
        f.write(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY))
    return out / "index.md"


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.load.report [DIR]``: render the report again from ``DIR/samples.json.gz``."""
    import sys

    out = Path((argv if argv is not None else sys.argv[1:])[0] if (argv or sys.argv[1:]) else "docs/load")
    with gzip.open(out / "samples.json.gz") as f:
        results = orjson.loads(f.read())
    print(write(results, out))


if __name__ == "__main__":
    main()
