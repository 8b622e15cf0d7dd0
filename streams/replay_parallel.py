"""Replay and rebuild on every core: one process per share of the partitions.

An order's events all live in one partition, so partitions split the work without any
coordination: process ``i`` of ``n`` folds partitions ``p`` with ``p % n == i`` (of the
topic, or of a record-log file, whose blocks never mix partitions), with the worker's step.
Then it either

* writes its orders' public views, sorted by order id, for the parent to merge into one
  sorted JSON-lines stream (``kuailv replay``), or
* rebuilds Redis: encodes each order's projection and writes fold state, projection and
  indexes with the worker's store, in big batches (``kuailv rebuild``).

The processes are forked before any Kafka client exists (librdkafka threads do not survive
a fork). Results come back through temporary files.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from projections.keyed_batch import Counts
from projections.order_view import public_view
from schemas.codec import AvroCodec
from streams.replay import Folder, read_record_log, read_topic_batches, topic_partitions

REBUILD_CHUNK = 2000  # orders per Redis call


@dataclass(frozen=True)
class Source:
    """A topic (``bootstrap`` + ``topic``) or a record-log file (``path``)."""

    bootstrap: str | None = None
    topic: str | None = None
    path: str | None = None

    def describe(self) -> str:
        return self.path if self.path else f"{self.topic} @ {self.bootstrap}"


@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str


@dataclass
class Share:
    """What one process did."""

    index: int
    events: int = 0
    orders: int = 0
    counts: Counts = field(default_factory=Counts)
    dead_letters: list[str] = field(default_factory=list)
    dead_letter_count: int = 0
    fold_s: float = 0.0
    write_s: float = 0.0
    peak_rss_mb: float = 0.0
    views_file: str | None = None
    error: str | None = None


@dataclass
class Summary:
    shares: list[Share]
    seconds: float

    @property
    def events(self) -> int:
        return sum(s.events for s in self.shares)

    @property
    def orders(self) -> int:
        return sum(s.orders for s in self.shares)

    @property
    def dead_letter_count(self) -> int:
        return sum(s.dead_letter_count for s in self.shares)

    @property
    def dead_letters(self) -> list[str]:
        return [d for s in self.shares for d in s.dead_letters]

    @property
    def peak_rss_mb(self) -> float:
        return max((s.peak_rss_mb for s in self.shares), default=0.0)


def _batches(source: Source, index: int, workers: int) -> Iterator[list]:
    if source.path:
        return read_record_log(source.path, keep=lambda topic, p: p % workers == index)
    assert source.bootstrap and source.topic
    mine = [p for p in topic_partitions(source.bootstrap, source.topic) if p % workers == index]
    return read_topic_batches(source.bootstrap, source.topic, mine) if mine else iter(())


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_share(source: Source, index: int, workers: int, redis_target: RedisTarget | None, views: bool,
               tmp: str) -> Share:
    from streams.runtime import tune_gc

    tune_gc()
    share = Share(index)
    codec = AvroCodec(epoch_ms=True)
    t0 = time.perf_counter()
    folder = Folder(codec, spill=True)
    for batch in _batches(source, index, workers):
        folder.add(batch)
    result = folder.result
    states = folder.spilled
    assert states is not None
    share.fold_s = time.perf_counter() - t0
    share.events = result.events
    share.counts = result.counts
    share.dead_letter_count = len(result.dead_letters)
    share.dead_letters = result.dead_letters[:20]
    t1 = time.perf_counter()
    keys = sorted(states.keys())
    if redis_target is not None:
        share.orders = _rebuild(keys, states, codec, redis_target)
    if views:
        # One "order id <TAB> JSON" line per order, sorted, streamed to a file the parent merges.
        path = Path(tmp) / f"views-{index}.tsv"
        n = 0
        with open(path, "wb") as out:
            for oid in keys:
                st = states.peek(oid)
                if st is not None and st["view"] is not None:
                    out.write(oid.encode() + b"\t" + orjson.dumps(public_view(st["view"]), option=orjson.OPT_SORT_KEYS)
                              + b"\n")
                    n += 1
        share.orders = share.orders or n
        share.views_file = str(path)
    share.write_s = time.perf_counter() - t1
    share.peak_rss_mb = _peak_rss_mb()
    return share


def _rebuild(keys: list[str], states: Any, codec: AvroCodec, target: RedisTarget) -> int:
    import redis

    from projections.order_step import OrderProjection
    from streams.sinks.redis_orders import OrderWrite, RedisOrderStore

    client = redis.Redis.from_url(target.url, socket_timeout=60)
    store = RedisOrderStore(client, target.prefix, codec)
    projection = OrderProjection(codec)
    writes: list[OrderWrite] = []
    n = 0
    try:
        for oid in keys:
            state = states.peek(oid)
            if state is None:
                continue
            view = state["view"]
            writes.append(OrderWrite(oid, state, projection.encode_view(state).data if view is not None else None))
            if len(writes) >= REBUILD_CHUNK:
                store.save(writes)
                n += len(writes)
                writes = []
        if writes:
            store.save(writes)
            n += len(writes)
    finally:
        client.close()
    return n


def _child(source: Source, index: int, workers: int, redis_target: RedisTarget | None, views: bool, tmp: str,
           out_path: str) -> None:
    try:
        share = _run_share(source, index, workers, redis_target, views, tmp)
    except BaseException as exc:  # reported to the parent, which fails the command with it
        share = Share(index, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    Path(out_path).write_bytes(pickle.dumps(share))


def run(source: Source, workers: int, *, views_out: BinaryIO | None = None,
        redis_target: RedisTarget | None = None) -> Summary:
    """Replay ``source`` on ``workers`` processes; write sorted view lines to ``views_out`` and/or
    rebuild ``redis_target``. Raises RuntimeError when a process failed."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kuailv-replay-") as tmp:
        procs = []
        for i in range(workers):
            out_path = os.path.join(tmp, f"share-{i}.pickle")
            p = ctx.Process(target=_child, args=(source, i, workers, redis_target, views_out is not None, tmp,
                                                 out_path), name=f"replay-{i}")
            p.start()
            procs.append((p, out_path))
        shares = []
        for p, out_path in procs:
            p.join()
            if not os.path.exists(out_path):
                raise RuntimeError(f"replay process {p.name} died (exit code {p.exitcode}) without a result")
            shares.append(pickle.loads(Path(out_path).read_bytes()))
        failed = [s for s in shares if s.error]
        if failed:
            raise RuntimeError(f"replay process {failed[0].index} failed: {failed[0].error}")
        if views_out is not None:
            files = [open(s.views_file, "rb") for s in shares if s.views_file]  # noqa: SIM115
            try:
                for line in heapq.merge(*files, key=lambda ln: ln[:ln.index(b"\t")]):
                    views_out.write(line[line.index(b"\t") + 1:])
            finally:
                for fh in files:
                    fh.close()
    return Summary(shares, time.perf_counter() - t0)
