"""One agent's consume -> step -> sinks -> commit loop, on librdkafka batches.

    main thread:  consume a batch ──▶ agent.process (decode, fold, encode: CPU) ──▶ hand over
    sink thread:                         agent.write: Kafka produce + flush (acks=all),
                                         then Redis / InfluxDB; report the offsets done
    main thread:  commit the offsets of written batches (in order), consume the next batch

The sink thread writes batch N while the main thread already folds batch N+1 (the
agent's state cache is ahead of the store by at most the two batches in flight). A
batch's offsets are committed only after every write of that batch succeeded, and
batches are written in consumption order: at-least-once in, and an output is never
acknowledged before the outputs it depends on (Kafka before Redis, see the agent).

Errors: an infrastructure error (Kafka, Redis, InfluxDB unreachable) is retried with
backoff, in place, without committing; the queue between the threads holds one batch,
so the consumer stops pulling while the sinks are down. Any other exception is a bug
in our code: the batch is parked in the dead-letter topic (``PROCESSING_ERROR``) and
the partition moves on. Rebalance: before partitions are revoked the sink queue is
drained and their offsets committed; then the agent forgets their keys. Shutdown: the batch
in hand is written and committed; if a sink stays down longer than ``shutdown_grace_s`` the
batch is abandoned uncommitted (whoever owns the partition next processes it again).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.kafka_client import client_config
from projections.keyed_batch import Counts
from schemas.dead_letters import SourceRecord

log = logging.getLogger(__name__)
Partition = tuple[str, int]


@dataclass(slots=True)
class Staged:
    """A processed batch waiting for its writes: what the sink thread needs, nothing more."""

    records: list[SourceRecord]
    kafka: list[tuple[Any, ...]] = field(default_factory=list)  # (topic, key, value[, timestamp ms]): flushed first
    payload: Any = None  # the agent's other writes (Redis, InfluxDB)
    counts: Counts = field(default_factory=Counts)

    @property
    def span(self) -> str:
        return f"{self.records[0].position}..{self.records[-1].position}" if self.records else "(empty)"


class Agent(Protocol):
    name: str
    topics: tuple[str, ...]

    def process(self, records: list[SourceRecord]) -> Staged:
        """CPU work of one batch (main thread). May raise an infrastructure error (retried)."""

    def write(self, staged: Staged) -> None:
        """Every write of a batch, Kafka first (sink thread). Raises to retry or park."""

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        """A batch that dead-letters ``records`` as PROCESSING_ERROR and writes nothing else."""

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        """Drop what is cached for these partitions (None: everything)."""

    def close(self) -> None: ...


def infra_errors() -> tuple[type[BaseException], ...]:
    from confluent_kafka import KafkaException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from streams.sinks.errors import SinkError

    return (SinkError, KafkaException, RedisConnectionError, RedisTimeoutError, OSError)


def consumer_config(bootstrap: str, group: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        **client_config(bootstrap),
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,  # offsets are committed after the writes of their batch
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "max.poll.interval.ms": 600_000,  # a sink outage blocks polling while it is retried
        "fetch.wait.max.ms": 50,
        **overrides,
    }


def to_record(msg: Any) -> SourceRecord:
    ts_type, ts = msg.timestamp()
    return SourceRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), ts if ts_type else None)


class _Sinks(threading.Thread):
    """Writes staged batches in order; reports each batch's offsets once written."""

    def __init__(self, agent: Agent, on_written: Callable[[Staged], None],
                 sleep: Callable[[float], None] | None) -> None:
        super().__init__(name=f"{agent.name}-sinks", daemon=True)
        self.agent = agent
        self.queue: queue.Queue[Staged | None] = queue.Queue(maxsize=1)
        self.on_written = on_written
        self.failed: BaseException | None = None
        self.abandon = threading.Event()  # shutting down while a sink stays down: give up on the batch
        self.sleep = sleep or self.abandon.wait  # a backoff ends early when the batch is abandoned
        self._retryable = infra_errors()

    def run(self) -> None:
        try:
            while (staged := self.queue.get()) is not None:
                try:
                    self._write(staged)
                finally:
                    self.queue.task_done()
            self.queue.task_done()
        except BaseException as exc:
            self.failed = exc
            log.exception("%s sink thread died", self.agent.name)

    def _write(self, staged: Staged) -> None:
        delay = 0.5
        while True:
            try:
                self.agent.write(staged)
                break
            except self._retryable as exc:
                if self.abandon.is_set():
                    log.error("%s batch %s: %s: %s; shutting down: not written, not committed (the next owner "
                              "of its partitions processes it again)", self.agent.name, staged.span,
                              type(exc).__name__, exc)
                    return
                log.error("%s batch %s: %s: %s; retrying in %.1fs", self.agent.name, staged.span,
                          type(exc).__name__, exc, delay)
            except Exception as exc:
                log.exception("%s batch %s failed to write; parking %d records in the dead-letter topic",
                              self.agent.name, staged.span, len(staged.records))
                self.agent.forget(None)  # the cache may be ahead of what was written: reload from the store
                staged = self.agent.park(staged.records, f"{type(exc).__name__}: {exc}")
                continue
            self.sleep(delay)
            delay = min(delay * 2, 30.0)
        self.on_written(staged)


class BatchLoop:
    """Runs one agent until ``stop`` is set. Start several processes with the same group to scale out."""

    def __init__(self, agent: Agent, consumer: Any, *, max_batch: int, max_wait_s: float,
                 renames: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 shutdown_grace_s: float = 30.0) -> None:
        self.shutdown_grace_s = shutdown_grace_s
        self.agent = agent
        self.renames = renames or {}  # contract topic name -> the topic actually consumed
        self._canonical = {v: k for k, v in self.renames.items()}
        self.consumer = consumer  # confluent_kafka.Consumer (or a test double)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.totals = Counts()
        self.batches = 0
        self._written: queue.SimpleQueue[Staged] = queue.SimpleQueue()
        self._sinks = _Sinks(agent, self._written.put, None if sleep is time.sleep else sleep)
        self._retryable = infra_errors()
        # the newest offset committed per partition (consumed topic names), re-sent while idle: an asynchronous
        # commit that failed (e.g. in a rebalance) is not retried by librdkafka, and the lag would stay up
        self._committed: dict[Partition, int] = {}
        self._recommit_s = 5.0
        self._last_commit = time.monotonic()

    # --- consumer group callbacks (called inside consume(), on the main thread) ---------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("%s assigned %s", self.agent.name, [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        parts = [(self._canonical.get(p.topic, p.topic), p.partition) for p in partitions]
        log.info("%s revoking %s: finishing in-flight writes", self.agent.name, parts)
        self._drain()
        self._commit(asynchronous=False)
        self._forget_committed(partitions)
        self.agent.forget(parts)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        parts = [(self._canonical.get(p.topic, p.topic), p.partition) for p in partitions]
        log.warning("%s lost %s (no commit possible)", self.agent.name, parts)
        self._drain()
        self._forget_committed(partitions)
        self.agent.forget(parts)

    def _forget_committed(self, partitions: list[Any]) -> None:
        for p in partitions:
            self._committed.pop((p.topic, p.partition), None)

    # --- the loop ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> Counts:
        self.consumer.subscribe([self.renames.get(t, t) for t in self.agent.topics], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._sinks.start()
        try:
            while not stop.is_set():
                self._check_sinks()
                batch = self._next_batch()
                self._commit(idle=not batch)
                staged = self._process(batch, stop) if batch else None
                if staged is not None:
                    self._submit(staged)
        finally:
            try:
                self._drain(self.shutdown_grace_s)
                self._commit(asynchronous=False)
            finally:
                if self._sinks.is_alive():
                    self._sinks.queue.put(None)
                    self._sinks.join(30)
                self.consumer.close()
                self.agent.close()
        return self.totals

    def _submit(self, staged: Staged) -> None:
        """Hand a batch to the sink thread; blocks while it still writes the previous one."""
        while True:
            try:
                self._sinks.queue.put(staged, timeout=0.5)
                return
            except queue.Full:
                self._check_sinks()

    def _next_batch(self) -> list[SourceRecord]:
        """Wait up to max_wait for the first record, then take what is already fetched (no linger)."""
        first = self.consumer.poll(self.max_wait_s)
        if first is None:
            return []
        msgs = [first, *self.consumer.consume(self.max_batch - 1, 0)] if self.max_batch > 1 else [first]
        batch = []
        for m in msgs:
            err = m.error()
            if err is None:
                rec = to_record(m)
                if self._canonical:  # agents see contract names (dead letters too)
                    rec = SourceRecord(self._canonical.get(rec.topic, rec.topic), rec.partition, rec.offset,
                                       rec.key, rec.value, rec.timestamp_ms)
                batch.append(rec)
            elif err.fatal():
                raise RuntimeError(f"{self.agent.name}: fatal consumer error: {err}")
            else:
                log.warning("%s consumer: %s", self.agent.name, err)
        return batch

    def _process(self, batch: list[SourceRecord], stop: threading.Event) -> Staged | None:
        """The processed batch; None when stopping while the store it needs is down (not committed)."""
        delay = 0.5
        while True:
            try:
                return self.agent.process(batch)
            except self._retryable as exc:
                if stop.is_set():
                    log.error("%s batch %s..%s: %s: %s; shutting down: left for the next owner", self.agent.name,
                              batch[0].position, batch[-1].position, type(exc).__name__, exc)
                    return None
                log.error("%s batch %s..%s: %s: %s; retrying in %.1fs", self.agent.name, batch[0].position,
                          batch[-1].position, type(exc).__name__, exc, delay)
            except Exception as exc:
                log.exception("%s batch %s..%s failed; parking %d records in the dead-letter topic",
                              self.agent.name, batch[0].position, batch[-1].position, len(batch))
                self.agent.forget(None)
                return self.agent.park(batch, f"{type(exc).__name__}: {exc}")
            stop.wait(delay) if self.sleep is time.sleep else self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _check_sinks(self) -> None:
        if self._sinks.failed is not None:
            raise RuntimeError(f"{self.agent.name}: sink thread failed") from self._sinks.failed

    def _drain(self, grace_s: float | None = None) -> None:
        """Wait until every handed-over batch is written (or the sink thread died: raise). With
        ``grace_s`` (shutting down), a sink still failing after that long abandons its batch:
        uncommitted, so whoever owns the partition next processes it again."""
        q = self._sinks.queue
        deadline = None if grace_s is None else time.monotonic() + grace_s
        while True:
            self._check_sinks()
            with q.all_tasks_done:
                if not q.unfinished_tasks:
                    return
                q.all_tasks_done.wait(0.2)
            if deadline is not None and time.monotonic() > deadline and not self._sinks.abandon.is_set():
                log.error("%s: sinks still failing after %.0fs of shutdown; abandoning the batches in hand",
                          self.agent.name, grace_s)
                self._sinks.abandon.set()

    def _commit(self, asynchronous: bool = True, idle: bool = False) -> None:
        """Commit the offsets of every batch written so far (one commit for all of them). ``idle`` (nothing
        consumed): re-send the newest committed offsets every few seconds, in case an asynchronous commit
        failed (committing the same offsets again is harmless)."""
        from confluent_kafka import TopicPartition

        offsets: dict[Partition, int] = {}
        while True:
            try:
                staged = self._written.get_nowait()
            except queue.Empty:
                break
            self.batches += 1
            self.totals.add(staged.counts)
            for rec in staged.records:
                where = (self.renames.get(rec.topic, rec.topic), rec.partition)
                offsets[where] = max(offsets.get(where, -1), rec.offset + 1)
        now = time.monotonic()
        if not offsets and idle and self._committed and now - self._last_commit >= self._recommit_s:
            offsets = dict(self._committed)
        if offsets:
            self._committed.update(offsets)
            self._last_commit = now
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=asynchronous)
            except Exception as exc:  # e.g. partitions already revoked: the next owner re-reads them
                log.warning("%s commit of %s failed: %s", self.agent.name, tps, exc)
