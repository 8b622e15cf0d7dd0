"""Benchmark: GPS points through the geofence step with 10,000 fences and 2,000 vans.

    python -m bench.geofences [--fences 10000] [--vans 2000] [--points 200000] [--batch 2000]

Synthetic but city-shaped: fences are circles (60 %, 80-400 m) and polygons (40 %, 4-8
vertices, 100-600 m across) scattered over Beijing's 5th ring; vans drive straight legs at
20-50 km/h with GPS noise, pinging every 10 s, and each van has 3-8 customer sites on board.
Printed side by side, all in this run:

* index only: ``FenceIndex.classify`` of every point in batches (the spatial part);
* the step: ``fold_batch(GeofenceProjection)`` on framed Avro records as the worker runs it (decode,
  validate, one index query per batch, per-driver event-time fold, transitions, ETAs every 30 s of
  event time, notices, GPS-silence checks), per GPS point;
* the bare decode of the same records (``AvroCodec.decode``), the floor of any Python path;
* a naive peer, the Traccar way: for each point, test every fence in Python (circles by
  haversine, polygons by ray casting), timed on a sample of points;

then transitions per second of input, and peak RSS. Target (issue 7): under 20 us per point.
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import time
from typing import Any

from config.alert_rules import load_rules_file
from projections.eta import DistanceSpeedEta
from projections.fence_index import FenceIndex
from projections.fences import FenceSet, load_fences
from projections.fleet import STATUS_INTERVAL_MS
from projections.geo import haversine_m
from projections.geofence import GeoContext
from projections.geofence_step import GeofenceProjection
from projections.keyed_batch import fold_batch
from projections.van_eta import EtaSettings
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from streams.runtime import tune_gc

LAT0, LAT1, LNG0, LNG1 = 39.75, 40.05, 116.20, 116.60
T0 = 1_780_000_000_000
GPS, VANS = "kuailv.gps.v1", "kuailv.van-orders.v1"


def fence_file(n: int, rnd: random.Random) -> dict[str, Any]:
    fences = []
    for i in range(n):
        lat, lng = rnd.uniform(LAT0, LAT1), rnd.uniform(LNG0, LNG1)
        if rnd.random() < 0.6:
            fences.append({"id": f"F{i}", "kind": "DEPOT", "circle": {"lat": lat, "lng": lng,
                                                                    "radius_m": rnd.uniform(80, 400)}})
        else:
            k = rnd.randint(4, 8)
            r = rnd.uniform(50, 300) / 111_000
            ring = [[lat + r * math.sin(2 * math.pi * j / k), lng + r * 1.3 * math.cos(2 * math.pi * j / k)]
                    for j in range(k)]
            fences.append({"id": f"F{i}", "kind": "NO_GO", "polygon": ring})
    return {"version": "bench", "fences": fences}


def drive(vans: int, points: int, rnd: random.Random) -> list[dict[str, Any]]:
    """``points`` pings of ``vans`` vans in event-time order (one round of pings every 10 s)."""
    pos = [[rnd.uniform(LAT0, LAT1), rnd.uniform(LNG0, LNG1), rnd.uniform(0, 2 * math.pi),
            rnd.uniform(20, 50) / 3.6] for _ in range(vans)]
    out = []
    n = 0
    while len(out) < points:
        for v, p in enumerate(pos):
            if len(out) >= points:
                break
            step = p[3] * 10
            p[0] += step * math.cos(p[2]) / 111_000
            p[1] += step * math.sin(p[2]) / 85_000
            if not (LAT0 < p[0] < LAT1 and LNG0 < p[1] < LNG1) or rnd.random() < 0.01:
                p[2] = rnd.uniform(0, 2 * math.pi)
                p[0], p[1] = min(max(p[0], LAT0), LAT1), min(max(p[1], LNG0), LNG1)
            out.append({"event_id": f"e{n}-{v}", "driver_id": f"DRV-{v:05d}", "vehicle_id": f"VAN-{v:05d}",
                        "event_time": T0 + n * 10_000 + v, "producer": "bench", "lat": p[0] + rnd.gauss(0, 5e-5),
                        "lng": p[1] + rnd.gauss(0, 5e-5), "speed_kmh": p[3] * 3.6, "heading_deg": 90.0,
                        "accuracy_m": 5.0})
        n += 1
    return out


def van_orders(vans: int, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    for v in range(vans):
        for k in range(rnd.randint(3, 8)):
            out.append({"driver_id": f"DRV-{v:05d}", "vehicle_id": f"VAN-{v:05d}", "order_id": f"KL{v:05d}{k}",
                        "order_version": 9, "customer_id": "C", "warehouse_id": "WH", "state": "ON_BOARD",
                        "destination": {"lat": rnd.uniform(LAT0, LAT1), "lng": rnd.uniform(LNG0, LNG1)},
                        "window_start": T0, "window_end": T0 + 3_600_000, "dispatch_count": 1, "weight_kg": 30.0,
                        "event_time": T0 - 60_000})
    return out


def naive_hits(fences: FenceSet, lat: float, lng: float) -> int:
    """Traccar's way: every fence, every point."""
    hits = 0
    for f in fences.fences:
        if f.circle is not None:
            if haversine_m(lat, lng, f.circle[0], f.circle[1]) <= f.circle[2]:
                hits += 1
        else:
            inside = False
            ring = f.polygon or ()
            j = len(ring) - 1
            for i in range(len(ring)):
                (yi, xi), (yj, xj) = ring[i], ring[j]
                if (yi > lat) != (yj > lat) and lng < (xj - xi) * (lat - yi) / (yj - yi) + xi:
                    inside = not inside
                j = i
            hits += inside
    return hits


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--vans", type=int, default=2_000)
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=2_000)
    p.add_argument("--naive-sample", type=int, default=200)
    args = p.parse_args(argv)
    rnd = random.Random(11)
    t = time.perf_counter()
    fences = load_fences(fence_file(args.fences, rnd))
    index = FenceIndex(fences)
    build_s = time.perf_counter() - t
    pings = drive(args.vans, args.points, rnd)
    codec = AvroCodec(epoch_ms=True)
    records = [SourceRecord(VANS, 0, i, v["driver_id"].encode(), codec.encode("VanOrder", v), None)
               for i, v in enumerate(van_orders(args.vans, rnd))]
    base = len(records)
    records += [SourceRecord(GPS, 0, base + i, v["driver_id"].encode(), codec.encode("GpsPing", v), None)
                for i, v in enumerate(pings)]
    gps_records = records[base:]
    n = len(pings)
    print(f"geofence bench: {args.fences:,} fences (index built in {build_s:.2f} s), {args.vans:,} vans, "
          f"{n:,} GPS points, batches of {args.batch:,}")

    lats, lngs = [v["lat"] for v in pings], [v["lng"] for v in pings]
    t = time.perf_counter()
    hits = 0
    for i in range(0, n, args.batch):
        hits += sum(len(h) for h in index.classify(lats[i:i + args.batch], lngs[i:i + args.batch]))
    index_us = (time.perf_counter() - t) / n * 1e6

    t = time.perf_counter()
    for r in gps_records:
        codec.decode(r.value)
    decode_us = (time.perf_counter() - t) / n * 1e6

    rules = load_rules_file()
    ctx = GeoContext(fences, eta=EtaSettings(DistanceSpeedEta()), silence_ms=10 * 60_000,  # as the worker runs it
                     status_ms=STATUS_INTERVAL_MS)
    projection = GeofenceProjection(codec, index, ctx, {GPS: "GpsPing", VANS: "VanOrder"}, rules)
    tune_gc()  # as the worker does
    states: dict[str, Any] = {}
    transitions = late = etas = alerts = 0
    batch_ms: list[float] = []
    t = time.perf_counter()
    for i in range(0, len(records), args.batch):
        b0 = time.perf_counter()
        result = fold_batch(projection, records[i:i + args.batch], lambda keys: states)
        for key, f in result.folded.items():
            if f.state is not None:
                states[key] = f.state
            transitions += sum(kind == "transition" for kind, _ in f.outputs)
            etas += sum(kind == "eta" for kind, _ in f.outputs)
            alerts += sum(kind == "alert" for kind, _ in f.outputs)
        late += len(result.dead_letters)
        batch_ms.append((time.perf_counter() - b0) * 1000)
    step_s = time.perf_counter() - t
    step_us = step_s / n * 1e6

    sample = pings[:: max(1, n // args.naive_sample)][: args.naive_sample]
    t = time.perf_counter()
    naive = sum(naive_hits(fences, v["lat"], v["lng"]) for v in sample)
    naive_us = (time.perf_counter() - t) / len(sample) * 1e6
    batch_ms.sort()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  index only (FenceIndex.classify):   {index_us:8.2f} us/point   ({hits:,} fence hits incl. bands)")
    print(f"  geofence step (decode+index+fold+ETA): {step_us:5.2f} us/point   = {1e6 / step_us:,.0f} points/s, "
          f"{transitions:,} transitions, {etas:,} ETAs, {alerts:,} notices/alerts, {late} dead letters")
    print(f"  bare AvroCodec.decode:              {decode_us:8.2f} us/point")
    print(f"  naive loop over every fence:        {naive_us:8.0f} us/point   ({naive} hits on {len(sample)} points)")
    print(f"  ratios: step = {step_us / decode_us:.2f}x the bare decode; naive = {naive_us / step_us:,.0f}x the step, "
          f"{naive_us / index_us:,.0f}x the index")
    print(f"  per batch of {args.batch}: p50 {batch_ms[len(batch_ms) // 2]:.1f} ms, "
          f"p99 {batch_ms[int(len(batch_ms) * 0.99)]:.1f} ms; peak RSS {peak_mb:.0f} MiB; "
          f"target < 20 us/point: {'met' if step_us < 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
