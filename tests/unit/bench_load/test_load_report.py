"""The load report renders from results alone: figures with pass/fail, the PNGs, the raw samples."""

import gzip
from pathlib import Path

import orjson

from bench.load.mix import city_mix
from bench.load.report import figures, write

T0 = 1_780_000_000.0


def results(worker_rss: float = 300.0, drained: bool = True) -> dict:
    samples = []
    for i in range(80):
        t = T0 + i
        burst = 60 <= i < 70
        lag = 0 if (i < 60 or (drained and i > 74)) else 5000
        samples.append({
            "t": t, "produced": {"gps": 40 * i, "sensors": 20 * i, "order_events": 30 * i, "stock": 10 * i},
            "applied": {a: {"records": 90 * i, "applied": 90 * i} for a in
                        ("orders", "telemetry", "geofences", "alerts", "fleet", "stock")},
            "lag": {"g": lag, "g-alerts": 0},
            "procs": {"worker-1": {"rss_mib": worker_rss, "cpu_s": 0.6 * i}, "serve": {"rss_mib": 120.0,
                                                                                     "cpu_s": 0.1 * i}},
            "sample_s": 0.01 if not burst else 0.05})
    probes = {"visible": [{"kind": k, "t": T0 + i / 4, "ms": 5.0 + i % 7, "rtt_ms": 0.3}
                          for i in range(300) for k in ("order", "gps")],
              "alert": [{"t": T0 + i, "ms": 120.0} for i in range(70)],
              "webhook": [{"t": T0 + i, "ms": 40.0} for i in range(70)], "webhook_requests": 70}
    reads = [{"t": T0 + 10 * w, "ms": [3.0 + (i % 5) for i in range(500)], "errors": 0, "bare_ms": [0.4] * 20}
             for w in range(7)]
    mix = city_mix(100)
    return {"meta": {"started": "2026-11-30 04:00 UTC", "argv": "--rate 100", "rate": 100.0, "steady_s": 60.0,
                     "burst_s": 10.0, "burst_factor": 3.0, "drain_max_s": 30.0, "workers": 1, "clients": 10,
                     "read_rate": 50.0, "read_window_s": 10.0, "mix": {k: getattr(mix, k) for k in mix.__slots__},
                     "t0": T0, "end": T0 + 80, "tag": "abc123", "problems": []},
            "samples": samples, "probes": probes, "reads": reads,
            "ws": {"delays": [(T0 + i / 10, 30.0) for i in range(700)], "received": 700, "versions_sent": 70,
                   "clients": 10}}


def verdicts(r: dict) -> dict[str, bool | None]:
    return {row["figure"]: row["pass"] for row in figures(r)}


def test_targets_pass_and_fail_on_the_measured_values() -> None:
    ok = verdicts(results())
    assert ok["order event produced -> visible in Redis"] is True
    assert ok["alert condition -> alert record"] is True
    assert ok["consumer lag, all groups"] is True
    assert ok["worker RSS (each process tree)"] is True
    bad = verdicts(results(worker_rss=600.0, drained=False))
    assert bad["worker RSS (each process tree)"] is False
    assert bad["consumer lag, all groups"] is False


def test_write_renders_markdown_plots_and_raw_samples(tmp_path: Path) -> None:
    index = write(results(), tmp_path)
    text = index.read_text()
    assert "| figure | target | measured |" in text and "PASS" in text
    for png in ("throughput.png", "lag.png", "latency.png", "resources.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in text
    with gzip.open(tmp_path / "samples.json.gz") as f:
        raw = orjson.loads(f.read())
    assert len(raw["samples"]) == 80
