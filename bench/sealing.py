"""Benchmark: what sealing personal data costs, on the write path and in the fold.

    python -m bench.sealing [--orders 1000] [--rounds 3]

In process, no stack needed. The seeded simulator's commands for N orders (~10 events an order)
run through ``OrderService`` twice per round, on an in-memory event store:

* **sealed**: as the product runs it, every personal field sealed (AES-256-GCM) under its data
  subject's key from a ``SqliteKeyStore`` file behind the workers' ``CachedKeyStore``;
* **plain**: the same service with sealing switched off (a subclass, here only).

The events each one recorded, mapped and encoded as the relay publishes them, are then folded by
the order projection as the worker folds them (``fold_batch`` over batches of 500: decode, fold,
incremental ``OrderState`` encode of every changed view, derived records): the sealed log against
the plain one. Plus the bare cost of ``seal_record`` per event that carries personal data.

Sealed and plain run in back-to-back pairs (order alternating); the medians are reported with the
median of the pairs' ratios (this machine's speed moves from minute to minute: compare the ratio).
The first sealed pass, which creates every customer's and driver's key, is reported on its own.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commands.avro_mapping import to_avro
from commands.order_service import OrderService
from privacy.fields import personal_fields, seal_record
from privacy.keystore import DEV_MASTER_KEY, CachedKeyStore, KeyStore, SqliteKeyStore
from projections.keyed_batch import fold_batch
from projections.order_state import State
from projections.order_step import OrderProjection, derived_records
from schemas.codec import AvroCodec
from schemas.fieldwise_encoder import Encoded
from schemas.topics import ORDER_EVENTS
from simulator.config import SimulationConfig
from simulator.traffic import Command, command_kwargs, simulate
from streams.source import SourceRecord

Commands = list[tuple[str, str, dict[str, Any]]]


class PlainOrderService(OrderService):
    """The command side without sealing: the baseline (never used by the product)."""

    def _sealed(self, command: str, order_id: str, view: Any, fields: dict[str, Any]) -> dict[str, Any]:
        return fields


def simulated_commands(orders: int, seed: int) -> Commands:
    config = SimulationConfig(seed=seed, orders=orders, gps_interval_s=3600.0, sensor_interval_s=3600.0)
    return [(s.name, s.order_id, command_kwargs(s)) for s in simulate(config) if isinstance(s, Command)]


def write_path(service: OrderService, commands: Commands) -> float:
    """Seconds to execute every command (load, decide, seal, encode check, save)."""
    start = time.perf_counter()
    for name, order_id, kwargs in commands:
        service.execute(name, order_id, **kwargs)
    return time.perf_counter() - start


def published(service: OrderService, codec: AvroCodec) -> list[SourceRecord]:
    """The service's events as the relay publishes them (Confluent-framed Avro, keyed by order id)."""
    out = []
    for n in service.recorder.select_notifications(start=None, limit=10_000_000):
        record_type, record = to_avro(service.mapper.to_domain_event(n))  # type: ignore[arg-type]
        out.append(SourceRecord(ORDER_EVENTS.name, 0, len(out), record["order_id"].encode(),
                                codec.encode(record_type, record), record["event_time"]))
    return out


def fold_path(records: list[SourceRecord], batch: int = 500) -> tuple[float, int]:
    """Seconds for the worker's step over ``records`` (no sinks), and the projection bytes produced."""
    codec = AvroCodec(epoch_ms=True)
    projection = OrderProjection(codec)
    states: dict[str, State] = {}
    memos: dict[str, Encoded] = {}
    produced = 0
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        result = fold_batch(projection, records[i:i + batch], lambda keys: {k: states[k] for k in keys if k in states})
        for key, f in result.folded.items():
            if f.state is not None:
                states[key] = f.state
            if f.published and f.state is not None:
                memos[key] = projection.encode_view(f.state, memos.get(key))
                produced += len(memos[key].data)
            derived_records(codec, f.outputs)
    return time.perf_counter() - start, produced


def seal_only(records: list[tuple[str, dict[str, Any]]], keys: KeyStore) -> float:
    start = time.perf_counter()
    for record_type, record in records:
        seal_record(record_type, record, {"customer": "CUST-0001", "driver": "DRV-001"}, keys)
    return time.perf_counter() - start


def paired(rounds: int, plain: Callable[[], float], sealed: Callable[[], float]) -> tuple[list[float], list[float]]:
    """``rounds`` pairs, run back to back, the order alternating (this machine's speed drifts by the
    minute: a ratio within a pair is what to compare)."""
    p, s = [], []
    for i in range(rounds):
        if i % 2:
            s.append(sealed())
            p.append(plain())
        else:
            p.append(plain())
            s.append(sealed())
    return p, s


def _line(label: str, events: int, seconds: list[float]) -> str:
    t = statistics.median(seconds)
    return f"{label:<46}{events / t:10,.0f} events/s {t / events * 1e6:8.1f} us/event"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sealing", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    commands = simulated_commands(args.orders, args.seed)
    events = len(commands)
    codec = AvroCodec()
    last: dict[str, OrderService] = {}

    def run(kind: str, keys: KeyStore) -> float:
        last[kind] = (OrderService if kind == "sealed" else PlainOrderService).from_url("memory://", keys=keys)
        return write_path(last[kind], commands)

    with tempfile.TemporaryDirectory(prefix="kuailv-bench-sealing-") as tmp:
        keys = CachedKeyStore(SqliteKeyStore(Path(tmp) / "keys.sqlite", DEV_MASTER_KEY), ttl_s=60)
        cold = run("sealed", keys)  # every subject's first key is created (one SQLite commit each)
        w_plain, w_sealed = paired(args.rounds, lambda: run("plain", keys), lambda: run("sealed", keys))
        logs = {kind: published(s, codec) for kind, s in last.items()}
        personal = [(t, r) for t, r in (to_avro(last["plain"].mapper.to_domain_event(n))  # type: ignore[arg-type]
                                        for n in last["plain"].recorder.select_notifications(start=None,
                                                                                             limit=10_000_000))
                    if personal_fields(t)]
        subjects = {r["customer_id"] for t, r in personal if t == "OrderCreated"} | \
                   {r["driver_id"] for t, r in personal if t == "OrderDispatched"}
        seal_s = min(seal_only(personal, keys) for _ in range(args.rounds))
    last.clear()  # the services' in-memory event stores: a heap the fold would otherwise pay GC passes over
    gc.collect()
    views: dict[str, int] = {}

    def fold(kind: str) -> float:
        seconds, views[kind] = fold_path(logs[kind])
        return seconds

    f_plain, f_sealed = paired(args.rounds, lambda: fold("plain"), lambda: fold("sealed"))

    w_ratio = statistics.median(p / s for p, s in zip(w_plain, w_sealed, strict=True))
    f_ratio = statistics.median(p / s for p, s in zip(f_plain, f_sealed, strict=True))
    size = {kind: sum(len(r.value or b"") for r in log) / len(log) for kind, log in logs.items()}
    print(f"{args.orders} orders, {events:,} order events ({len(personal):,} with personal data); medians of "
          f"{args.rounds} back-to-back pairs, in process")
    print(_line("write path (OrderService, memory store) plain", events, w_plain))
    print(_line("write path                             sealed", events, w_sealed)
          + f"  = {w_ratio:.2f}x plain (median of pair ratios)")
    print(f"  seal_record alone: {seal_s / len(personal) * 1e6:.1f} us per event with personal data "
          f"({len(personal) / seal_s:,.0f}/s, keys cached); the first sealed pass, creating the keys of "
          f"{len(subjects):,} customers and drivers: {events / cold:,.0f} events/s")
    print(_line("fold (worker step, batches of 500)     plain", events, f_plain))
    print(_line("fold                                   sealed", events, f_sealed)
          + f"  = {f_ratio:.2f}x plain (median of pair ratios)")
    print(f"record size: {size['plain']:.0f} B plain, {size['sealed']:.0f} B sealed per event; projection records "
          f"{views['plain']:,} B plain, {views['sealed']:,} B sealed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
