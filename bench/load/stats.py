"""Percentiles, windows and rates over the samples. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

Sample = dict[str, Any]
DRAINED = 100  # records of lag per group that count as drained


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank, as ``bench.api_load.pct``); NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def windows(points: Iterable[tuple[float, float]], t0: float, width_s: float = 10.0,
            qs: Sequence[float] = (0.5, 0.99)) -> list[tuple[float, list[float], int]]:
    """(window start - t0, [quantiles], n) per ``width_s`` window of (wall time, value) points, in order."""
    by: dict[int, list[float]] = {}
    for t, v in points:
        by.setdefault(int((t - t0) // width_s), []).append(v)
    return [(k * width_s, [pct(vs, q) for q in qs], len(vs)) for k, vs in sorted(by.items())]


def latencies(samples: Sequence[Sample]) -> tuple[list[float], int]:
    """(latencies ms of the samples seen, how many were never seen)."""
    seen = [s["ms"] for s in samples if s["ms"] is not None]
    return seen, len(samples) - len(seen)


def rates(samples: Sequence[Sample], path: Sequence[str], span: int = 1) -> list[tuple[float, float]]:
    """(t, per-second rate) of a cumulative counter at ``path`` (e.g. ("produced", "gps")), over the last
    ``span`` samples (a moving rate: counters that move in steps read smoother over a few seconds)."""
    points: list[tuple[float, float]] = []
    for s in samples:
        v: Any = s
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            points.append((s["t"], float(v)))
    out = []
    for i in range(span, len(points)):
        (ta, va), (tb, vb) = points[i - span], points[i]
        if tb > ta:
            out.append((tb, (vb - va) / (tb - ta)))
    return out


def mean_rate(samples: Sequence[Sample], path: Sequence[str], lo: float, hi: float) -> float:
    """Mean per-second rate of a cumulative counter between the first sample at or after ``lo`` and the last
    one at or before ``hi`` (time-weighted, whatever the spacing of the samples); NaN if fewer than two."""
    points = []
    for s in samples:
        v: Any = s
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if lo <= s["t"] <= hi:
            points.append((s["t"], float(v or 0)))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return float("nan")
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def total(samples: Sequence[Sample], key: str, sub: str | None = None) -> float:
    """Sum over the last sample's ``key`` mapping (optionally each value's ``sub``)."""
    if not samples:
        return 0.0
    last = samples[-1][key] or {}
    return float(sum((v.get(sub, 0) if sub else v) for v in last.values() if v is not None))


def cpu_share(samples: Sequence[Sample], proc: str) -> list[tuple[float, float]]:
    """(t, CPU cores used) of process ``proc`` between samples."""
    out, prev = [], None
    for s in samples:
        u = (s.get("procs") or {}).get(proc)
        if not u:
            continue
        if prev is not None and s["t"] > prev[0]:
            out.append((s["t"], (u["cpu_s"] - prev[1]) / (s["t"] - prev[0])))
        prev = (s["t"], u["cpu_s"])
    return out


def drained_at(samples: Sequence[Sample], after: float, threshold: int = DRAINED, group: str | None = None
               ) -> float | None:
    """Wall time of the first sample at or after ``after`` where every group's lag (or ``group``'s) is at
    most ``threshold`` records (the probes keep producing a few records a second while the rest drains)."""
    for s in samples:
        lag = s.get("lag")
        if s["t"] < after or lag is None:
            continue
        if (lag.get(group, 0) if group else max(lag.values(), default=0)) <= threshold:
            return float(s["t"])
    return None
