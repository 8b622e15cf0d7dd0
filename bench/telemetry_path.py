"""Benchmark: the telemetry path through the local Kafka, our worker next to a Quix Streams app.

    python -m bench.telemetry_path [--vans 2000] [--fences 10000] [--rounds 20] [--apps worker,quix]
                                   [--repeats 1] [--model DIR|baseline]

The path (issue 12): GPS -> geofences + ETA + rules + the learnt prediction -> InfluxDB + Redis + the
alert topic. One city-shaped log (``bench.geofences``: 10,000 fences over the 5th ring, 2,000 vans with
3-8 orders on board each, a ping per van every 10 s of event time) is produced once to private 6-partition
topics of the test stack's Kafka (the van orders first, then ``--rounds`` pings of every van). Then, in
turns, each application consumes it all with a fresh consumer group and writes everything the path writes:

* ``worker``: ``kuailv worker --agents telemetry,geofences`` as deployed: the telemetry agent (every point
  to InfluxDB, each van's newest position to Redis) and the geofence agent (the batch's points against the
  fence index in one query, the driver fold: transitions, ETAs and delay risk from the learnt model,
  notices and gps-silent alerts, fleet statuses -> Kafka; fold states, ETAs, alert views -> Redis; ETAs ->
  InfluxDB), offsets committed after the writes;
* ``quix``: ``bench/peers/quix_telemetry.py``, Quix Streams 3.28: the GPS and van-order topics
  concatenated (Quix's time alignment of co-partitioned topics), the same pure code per message (decode,
  validate, ``FenceIndex.classify`` of the point, ``GeofenceProjection.fold`` with the state in Quix's
  RocksDB store, the same model), points and ETAs through Quix's ``InfluxDB1Sink``, positions through its
  ``RedisSink``, the records to the same output topics.

Both count the input records they have written in Redis (the worker's agent counters; the peer's counter
at each checkpoint), polled every 50 ms: "from start" is spawn -> last record written (start-up and model
load included), "from first" first -> last. CPU seconds and peak RSS are of the process tree. Points/s =
GPS points / seconds. The best of ``--repeats`` per app counts (this machine is shared). Target: the worker
at least 50,000 points/s and at least 1.5x the Quix app.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from bench.flink_order_state import create_topics, delete_topics, produce
from bench.geofences import drive, fence_file, van_orders
from bench.kafka_peers import PEERS_PY, Result, measure_app
from bench.private_stores import drop_redis_prefix, influx_statement
from config import settings as settings_mod
from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import (
    ALERTS,
    DEAD_LETTERS,
    FLEET,
    GEOFENCE_TRANSITIONS,
    GPS,
    ORDER_ETAS,
    ROAD_CONDITIONS,
    SENSORS,
    VAN_ORDERS,
)

INPUTS = (GPS, VAN_ORDERS, ROAD_CONDITIONS, SENSORS)
OUTPUTS = (GEOFENCE_TRANSITIONS, ORDER_ETAS, ALERTS, FLEET, DEAD_LETTERS)


def build_log(vans: int, fences: int, rounds: int, seed: int = 11) -> tuple[dict, list[SourceRecord],
                                                                             list[SourceRecord]]:
    """(fence file, van-order records, GPS records), encoded as the producers encode them."""
    rnd = random.Random(seed)
    fence_doc = fence_file(fences, rnd)
    pings = drive(vans, vans * rounds, rnd)
    codec = AvroCodec(epoch_ms=True)
    orders = [SourceRecord(VAN_ORDERS.name, 0, i, v["driver_id"].encode(), codec.encode("VanOrder", v),
                           v["event_time"]) for i, v in enumerate(van_orders(vans, rnd))]
    gps = [SourceRecord(GPS.name, 0, i, v["driver_id"].encode(), codec.encode("GpsPing", v), v["event_time"])
           for i, v in enumerate(pings)]
    return fence_doc, orders, gps


def end_markers(last_ms: int, partitions: int = 6) -> list[tuple[int, bytes, bytes, int]]:
    """One van order per van-order partition, an hour after the log's last ping, of a driver seen nowhere else
    and already off the van: (partition, key, value, timestamp). Quix's time alignment of concatenated topics
    holds back a partition's records while another assigned partition has nothing newer; without these the peer
    stalls at the end of a finite log. Both apps read them; neither publishes anything for them (buffered
    until an event-time watermark the log never reaches)."""
    codec = AvroCodec(epoch_ms=True)
    out = []
    for p in range(partitions):
        driver = f"DRV-END-{p}"
        v = {"driver_id": driver, "vehicle_id": f"VAN-END-{p}", "order_id": f"KLEND{p}", "order_version": 1,
             "customer_id": "C", "warehouse_id": "WH", "state": "OFF_BOARD",
             "destination": {"lat": 39.9, "lng": 116.4}, "window_start": last_ms, "window_end": last_ms + 7_200_000,
             "dispatch_count": 1, "weight_kg": 0.0, "event_time": last_ms + 3_600_000}
        out.append((p, driver.encode(), codec.encode("VanOrder", v), v["event_time"]))
    return out


def produce_to_partitions(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes, int]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for partition, key, value, ts in records:
        producer.produce(topic, value, key, partition=partition, timestamp=ts)
    if producer.flush(30):
        raise RuntimeError(f"end markers not delivered to {topic}")


def quix_changelogs(bootstrap: str, tag: str) -> list[str]:
    """The changelog topics Quix created for its state stores (named after the input topics)."""
    from confluent_kafka.admin import AdminClient

    from infra.services import quiet_client_config

    names = AdminClient(quiet_client_config(bootstrap)).list_topics(timeout=10).topics
    return [n for n in names if n.startswith("changelog__") and f"bench-{tag}." in n]


def worker_app(s: Settings, topics: dict[str, str], tag: str, fences: Path, model: str, db: str
               ) -> tuple[list[str], dict[str, str], str]:
    renames = ",".join(f"{k}={v}" for k, v in topics.items())
    env = {"KUAILV_PROFILE": s.profile, "KUAILV_CONSUMER_GROUP": f"bench-tp-{tag}", "KUAILV_REDIS_PREFIX": f"tw{tag}",
           "KUAILV_TOPIC_RENAMES": renames, "KUAILV_FENCES": str(fences), "KUAILV_ETA_MODEL": model,
           "KUAILV_INFLUX_DB": db}
    loglevel = os.environ.get("BENCH_LOGLEVEL", "warning")
    return ([sys.executable, "-m", "cli.main", "worker", "--agents", "telemetry,geofences", "--loglevel", loglevel],
            env, f"tw{tag}")


def quix_app(s: Settings, topics: dict[str, str], tag: str, fences: Path, model: str, db: str, state_dir: Path
             ) -> tuple[list[str], dict[str, str], str]:
    env = {"PEER_BOOTSTRAP": s.kafka_bootstrap, "PEER_TOPICS": json.dumps(topics), "PEER_GROUP": f"bench-tq-{tag}",
           "PEER_REDIS_PORT": str(s.redis_port), "PEER_PREFIX": f"tq{tag}", "PEER_COUNTER": f"tq{tag}:counter",
           "PEER_STATE_DIR": str(state_dir), "PEER_FENCES": str(fences), "PEER_ETA_MODEL": model,
           "PEER_INFLUX_PORT": str(s.influx_port), "PEER_INFLUX_DB": db}
    return [str(PEERS_PY), "-m", "bench.peers.quix_telemetry"], env, f"tq{tag}"


def progress(r: object, app: str, prefix: str, n_orders: int) -> int:
    """Input records written so far. The worker's two agents both read the GPS topic: the log is done when
    the telemetry agent has written every point and the geofence agent every point and van order."""
    if app == "quix":
        return int(r.get(f"{prefix}:counter") or 0)  # type: ignore[attr-defined]
    tel = int(r.hget(f"{prefix}:stats:telemetry", "records") or 0)  # type: ignore[attr-defined]
    geo = int(r.hget(f"{prefix}:stats:geofences", "records") or 0)  # type: ignore[attr-defined]
    return min(tel + n_orders, geo)


def model_spec(arg: str | None) -> tuple[str, object]:
    """The model directory (or "baseline") both apps load, and what to clean up afterwards."""
    if arg:
        return arg, None
    from bench.eta_inference import the_model

    _estimator, path, tmp = the_model(None)
    return str(path), tmp


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vans", type=int, default=2_000)
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=20, help="pings per van (one every 10 s of event time)")
    p.add_argument("--apps", default="worker,quix")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--model", help="a model artifact directory, or 'baseline' (default: the current trained one)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--profile", default="test")
    args = p.parse_args(argv)
    apps = [a for a in args.apps.split(",") if a]
    if "quix" in apps and not PEERS_PY.exists():
        raise SystemExit(f"{PEERS_PY} is missing: run `make setup` (scripts/setup_peers.sh)")
    import redis

    from infra import stack

    s = settings_mod.load(args.profile)
    needed = ["kafka", "redis", "influx"]
    started = [svc for svc in needed if not stack.is_healthy(args.profile, services=[svc])]
    stack.ensure_started(args.profile, services=needed, create_topics=False, out=None)
    tag = uuid.uuid4().hex[:6]
    topics = {t.name: f"bench-{tag}.{t.name.split('.')[1]}" for t in (*INPUTS, *OUTPUTS)}
    db = f"bench_{tag}"
    work = Path(tempfile.mkdtemp(prefix="kuailv-telemetry-bench-"))
    r = redis.Redis(port=s.redis_port)
    prefixes: list[str] = []
    model, tmp_model = model_spec(args.model)
    try:
        fence_doc, orders, gps = build_log(args.vans, args.fences, args.rounds)
        fences = work / "fences.json"
        fences.write_text(json.dumps(fence_doc))
        create_topics(s.kafka_bootstrap, {name: (6 if t in INPUTS else 3, {})
                                          for t in (*INPUTS, *OUTPUTS) for name in [topics[t.name]]})
        produce(s.kafka_bootstrap, topics[VAN_ORDERS.name], orders, event_time=True)
        produce(s.kafka_bootstrap, topics[GPS.name], gps, event_time=True)
        markers = end_markers(max(r.timestamp_ms or 0 for r in gps))
        produce_to_partitions(s.kafka_bootstrap, topics[VAN_ORDERS.name], markers)
        influx_statement(s, f'CREATE DATABASE "{db}"')
        n = len(gps) + len(orders) + len(markers)
        n_orders = len(orders) + len(markers)
        print(f"log: {len(gps):,} GPS points of {args.vans:,} vans ({args.rounds} each, every 10 s of event time) "
              f"+ {len(orders):,} van orders; {args.fences:,} fences; model {model}; 6-partition topics on "
              f"{s.kafka_bootstrap}", flush=True)
        best: dict[str, Result] = {}
        for rep in range(1, args.repeats + 1):
            for app in apps:
                run = uuid.uuid4().hex[:8]
                if app == "worker":
                    cmd, env, prefix = worker_app(s, topics, run, fences, model, db)
                else:
                    cmd, env, prefix = quix_app(s, topics, run, fences, model, db, work / f"state-{run}")
                prefixes.append(prefix)
                res = measure_app(app, cmd, env, lambda app=app, prefix=prefix: progress(r, app, prefix, n_orders),
                                  n, args.timeout, work / f"{app}-{run}.log")
                pts = len(gps)
                print(f"  repeat {rep} {app:7s} {pts / res.total_s:8,.0f} points/s from start ({res.total_s:5.1f} s), "
                      f"{pts / max(res.span_s, 1e-3):8,.0f} from first ({res.first_s:4.1f} s to first), "
                      f"{pts / max(res.cpu_s, 1e-3):8,.0f} per CPU-s, peak RSS {res.peak_rss_mb:4.0f} MiB", flush=True)
                if app not in best or res.rate_total > best[app].rate_total:
                    best[app] = res
        pts = len(gps)
        print("\nbest (GPS points/s):")
        print(f"  {'app':8s} {'from start':>11s} {'from first':>11s} {'per CPU-s':>10s} {'peak RSS':>9s}")
        for app, res in best.items():
            print(f"  {app:8s} {pts / res.total_s:11,.0f} {pts / max(res.span_s, 1e-3):11,.0f} "
                  f"{pts / max(res.cpu_s, 1e-3):10,.0f} {res.peak_rss_mb:6.0f} MiB")
        if "worker" in best and "quix" in best:
            w, q = best["worker"], best["quix"]
            print(f"  worker / quix: {q.total_s / w.total_s:.2f}x from start, "
                  f"{q.span_s / max(w.span_s, 1e-3):.2f}x from first, {q.cpu_s / max(w.cpu_s, 1e-3):.2f}x per CPU-s "
                  f"(target 1.5x)")
        if "worker" in best:
            rate = pts / max(best["worker"].span_s, 1e-3)
            verdict = "met" if rate >= 50_000 else "NOT met"
            print(f"  worker: {rate:,.0f} points/s from first (target 50,000: {verdict})")
    finally:
        for prefix in prefixes:
            drop_redis_prefix(r, prefix)
        delete_topics(s.kafka_bootstrap, [*topics.values(), *quix_changelogs(s.kafka_bootstrap, tag)])
        try:
            influx_statement(s, f'DROP DATABASE "{db}"')
        except OSError as exc:
            print(f"warning: could not drop InfluxDB database {db}: {exc}")
        shutil.rmtree(work, ignore_errors=True)
        if tmp_model is not None:
            tmp_model.cleanup()  # type: ignore[attr-defined]
        if started:
            stack.stop(args.profile, services=started, out=None)


if __name__ == "__main__":
    main()
