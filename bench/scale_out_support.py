"""The parts of ``bench.scale_out``: the city log, private topics, worker processes and what they logged,
the consumer group seen from the AdminClient and the broker log, and the no-loss checks.

Everything here talks to the ``scale`` stack (or whichever profile the caller passes settings of).
"""

from __future__ import annotations

import ast
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from bench.geofences import drive
from bench.order_projection import build_log
from bench.private_stores import influx_statement
from config.settings import Settings
from infra.services import quiet_client_config
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import ALL_TOPICS, GPS, ORDER_EVENTS, SENSORS
from streams.source import SourceRecord

ROOT = Path(__file__).resolve().parents[1]
INPUTS = {"orders": (ORDER_EVENTS.name,), "telemetry": (GPS.name, SENSORS.name)}
COMPARTMENTS = ("CHILLED", "FROZEN", "AMBIENT")


# --- the log ------------------------------------------------------------------------------------------
def sensor_readings(devices: int, rounds: int, rnd: random.Random, t0: int) -> list[dict[str, Any]]:
    """One reading per device per round (every 10 s), devices on the vans' compartments."""
    return [{"event_id": f"s{n}-{d}", "device_id": f"TMP-{d:05d}", "vehicle_id": f"VAN-{d:05d}",
             "warehouse_id": None, "compartment": COMPARTMENTS[d % 3], "event_time": t0 + n * 10_000 + d,
             "producer": "bench", "temperature_c": round(rnd.gauss(2.0 if d % 3 == 0 else -18.0, 0.4), 2),
             "humidity_pct": round(rnd.uniform(82, 92), 1)} for n in range(rounds) for d in range(devices)]


def city_log(orders: int, vans: int, rounds: int, devices: int, seed: int = 42) -> dict[str, list[SourceRecord]]:
    """Contract topic name -> records: order stories (10 % duplicates, bounded reordering), ``vans`` vans
    pinging every 10 s for ``rounds`` rounds, ``devices`` cold-chain sensors at the same pace."""
    rnd = random.Random(seed)
    codec = AvroCodec()
    pings = drive(vans, vans * rounds, rnd)
    readings = sensor_readings(devices, rounds, rnd, pings[0]["event_time"] if pings else 0)
    return {
        ORDER_EVENTS.name: build_log(orders, seed, 0.10, 50),
        GPS.name: [SourceRecord(GPS.name, 0, i, p["driver_id"].encode(), codec.encode("GpsPing", p), None)
                   for i, p in enumerate(pings)],
        SENSORS.name: [SourceRecord(SENSORS.name, 0, i, r["device_id"].encode(), codec.encode("SensorReading", r),
                                    None) for i, r in enumerate(readings)],
    }


def private_topics(tag: str) -> dict[str, str]:
    """Every contract topic renamed for one run (``KUAILV_TOPIC_RENAMES``): outputs stay private too."""
    return {spec.name: f"scale-{tag}.{spec.name.removeprefix('kuailv.')}" for spec in ALL_TOPICS}


def topic_specs(renames: dict[str, str]) -> dict[str, tuple[int, dict[str, str]]]:
    return {renames[s.name]: (s.partitions, {"cleanup.policy": s.config.get("cleanup.policy", "delete")})
            for s in ALL_TOPICS}


# --- worker processes -----------------------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log_path: Path
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    def sample(self) -> None:
        try:
            p = psutil.Process(self.proc.pid)
            t = p.cpu_times()
            self.cpu_s = t.user + t.system
            self.peak_rss_mb = max(self.peak_rss_mb, p.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def spawn_worker(name: str, s: Settings, agents: str, env: dict[str, str], log_dir: Path) -> Worker:
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "cli.main", "--profile", s.profile, "worker", "--agents", agents,
           "--loglevel", "info"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Worker(name, proc, log_path)


_ASSIGN = re.compile(r"^(\S+ \S+) INFO \S+ \S+: (\S+) (assigned|revoking) (\[.*?\])")
_LOST = re.compile(r"^(\S+ \S+) WARNING \S+ \S+: (\S+) lost (\[.*?\])")


def log_time(stamp: str) -> float:
    """The logging module's asctime (local time, ``2026-11-30 03:50:01,123``) as epoch seconds."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


@dataclass
class Assignment:
    owned: set[tuple[str, int]] = field(default_factory=set)  # (contract topic, partition)
    events: list[tuple[float, str, tuple[str, int]]] = field(default_factory=list)  # (t, +/-, tp)


def assignments(log_path: Path, renames: dict[str, str]) -> Assignment:
    """What a worker owns by its own log: assigned (incremental, actual names) minus revoked/lost."""
    canonical = {v: k for k, v in renames.items()}
    out = Assignment()
    for line in log_path.read_text(errors="replace").splitlines():
        m = _ASSIGN.match(line)
        lost = _LOST.match(line) if not m else None
        if not m and not lost:
            continue
        stamp, parts = (m.group(1), m.group(4)) if m else (lost.group(1), lost.group(3))  # type: ignore[union-attr]
        sign = "+" if m and m.group(3) == "assigned" else "-"
        for topic, partition in ast.literal_eval(parts):
            tp = (canonical.get(topic, topic), int(partition))
            out.events.append((log_time(stamp), sign, tp))
            (out.owned.add if sign == "+" else out.owned.discard)(tp)
    return out


def fmt_parts(owned: set[tuple[str, int]]) -> str:
    by: dict[str, list[int]] = {}
    for topic, p in sorted(owned):
        by.setdefault(topic.removeprefix("kuailv.").removesuffix(".v1"), []).append(p)
    return ", ".join(f"{t} {ps}" for t, ps in by.items()) or "none"


class CpuMeter:
    """The machine's busy share and the stack services' (Kafka, Redis, InfluxDB) CPU seconds over an interval."""

    def __init__(self, s: Settings) -> None:
        from infra import processes
        from infra.services import build

        found = {svc.name: processes.find_running(svc.process) for svc in build(s)}
        self._procs = {name: psutil.Process(pid) for name, pid in found.items() if pid is not None}
        self._t0, self._s0 = psutil.cpu_times(), self._stack()

    def _stack(self) -> dict[str, float]:
        out = {}
        for name, p in self._procs.items():
            try:
                t = p.cpu_times()
                out[name] = t.user + t.system
            except psutil.NoSuchProcess:
                out[name] = 0.0
        return out

    def read(self) -> tuple[float, dict[str, float]]:
        """(busy CPU seconds of the whole machine, CPU seconds per stack service) since the meter was made."""
        t1 = psutil.cpu_times()
        total = sum(t1) - sum(self._t0)
        idle = (t1.idle + t1.iowait) - (self._t0.idle + self._t0.iowait)
        s1 = self._stack()
        return total - idle, {k: s1[k] - self._s0.get(k, 0.0) for k in s1}


def lopsided(owned: list[set[tuple[str, int]]]) -> list[str]:
    """Input topics whose partitions all went to one of several workers (counts balanced, load not)."""
    if len(owned) < 2:
        return []
    out = []
    for topic in sorted({t for o in owned for t, _ in o}):
        shares = [sum(1 for t, _ in o if t == topic) for o in owned]
        if sum(1 for n in shares if n) == 1:
            out.append(f"{topic} all on worker {shares.index(max(shares)) + 1}")
    return out


# --- the group, from outside ----------------------------------------------------------------------------
def committed(admin: Any, group: str) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {(tp.topic, tp.partition): tp.offset for tp in fut.result(timeout=10).topic_partitions if tp.offset >= 0}


def admin_client(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(quiet_client_config(bootstrap))


def member_failed_at(kafka_log: Path, group: str, after: float) -> float | None:
    """When the broker's group coordinator declared a member of ``group`` failed (session timeout)."""
    pat = re.compile(r"^\[(\S+ \S+)\] INFO \[GroupCoordinator \d+\]: Member \S+ in group " + re.escape(group)
                     + r" has failed")
    for line in kafka_log.read_text(errors="replace").splitlines()[-5000:]:
        m = pat.match(line)
        if m and (t := log_time(m.group(1))) >= after:
            return t
    return None


# --- InfluxDB (one database per phase, so counts are exact) ---------------------------------------------
def influx_count(s: Settings, db: str, measurement: str, fld: str) -> int:
    res = influx_statement(s, f'SELECT count("{fld}") FROM "{measurement}"', db)["results"][0]
    series = res.get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


# --- no loss ---------------------------------------------------------------------------------------------
def losses(s: Settings, prefix: str, db: str, log: dict[str, list[SourceRecord]]) -> list[str]:
    """Empty when every order's Redis view equals the pure fold of the log, every van's newest ping is its
    Redis position, every distinct ping and reading is an InfluxDB point and the counters cover the inputs."""
    import redis

    from streams.sinks.redis_orders import RedisOrderStore

    codec = AvroCodec(epoch_ms=True)
    r = redis.Redis.from_url(s.redis_url)
    problems = []
    events = log.get(ORDER_EVENTS.name, [])
    states, _ = fold_all([(d.record_type, d.value) for d in (codec.decode(x.value) for x in events)])
    expected = {oid: public_view(st["view"]) for oid, st in states.items() if st["view"] is not None}
    store = RedisOrderStore(r, prefix, codec)
    wrong = [oid for oid, v in expected.items() if store.view(oid) != v]
    if wrong:
        problems.append(f"{len(wrong)} of {len(expected)} orders differ from the pure fold (e.g. {wrong[:3]})")
    newest: dict[str, int] = {}
    for rec in log.get(GPS.name, []):
        v = codec.decode(rec.value).value
        newest[v["driver_id"]] = max(newest.get(v["driver_id"], 0), int(v["event_time"]))
    pipe = r.pipeline(transaction=False)
    for d in newest:
        pipe.hget(f"{prefix}:driver:{d}:position", "at")
    stale = [d for d, got in zip(newest, pipe.execute(), strict=True) if got is None or int(got) != newest[d]]
    if stale:
        problems.append(f"{len(stale)} of {len(newest)} vans lack their newest position (e.g. {stale[:3]})")
    for topic, measurement, fld in ((GPS.name, "gps", "lat"), (SENSORS.name, "cold_chain", "temperature_c")):
        if topic not in log:
            continue
        got, want = influx_count(s, db, measurement, fld), len(log[topic])
        if got < want:
            problems.append(f"InfluxDB {measurement}: {got:,} points of {want:,} inputs")
    for agent, topics in INPUTS.items():
        if not any(t in log for t in topics):
            continue
        got = int(r.hget(f"{prefix}:stats:{agent}", "records") or 0)
        want = sum(len(log[t]) for t in topics)
        if got < want:
            problems.append(f"counter {agent}: {got:,} records counted of {want:,} inputs")
    r.close()
    return problems


def counters(r: Any, prefix: str) -> int:
    pipe = r.pipeline(transaction=False)
    for agent in INPUTS:
        pipe.hget(f"{prefix}:stats:{agent}", "records")
    return sum(int(x or 0) for x in pipe.execute())


def now() -> float:
    return time.time()
