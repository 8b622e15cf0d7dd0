"""BatchLoop without a broker: a scripted consumer and a recording agent.

What the loop promises: batches are written in consumption order and their offsets
committed only after every write of the batch; infrastructure errors are retried in
place (nothing committed meanwhile); any other exception parks the batch in the
dead-letter topic and the partition moves on; a revoke first finishes the writes in
flight and commits them, then the agent forgets the partition."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import ConnectionError as RedisConnectionError

from projections.keyed_batch import Counts
from schemas.dead_letters import SourceRecord
from streams.runtime.batch_loop import BatchLoop, Staged
from streams.sinks.errors import SinkError

TOPIC = "kuailv.order-events.v1"


class Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return f"O-{self._o}".encode()

    def value(self) -> bytes:
        return b"v"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._o)


class TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class ScriptedConsumer:
    """Serves ``script``: each item is a list of messages (one poll + consume) or a callable event."""

    def __init__(self, script: list[Any], stop: threading.Event) -> None:
        self.script = list(script)
        self.stop = stop
        self.subscribed: list[str] = []
        self.callbacks: dict[str, Any] = {}
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.pending: list[Msg] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics
        self.callbacks = callbacks

    def poll(self, timeout: float) -> Msg | None:
        while not self.pending:
            if not self.script:
                self.stop.set()
                return None
            item = self.script.pop(0)
            if callable(item):
                item(self)
            else:
                self.pending = list(item)
        return self.pending.pop(0)

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.commits.append(([(o.topic, o.partition, o.offset) for o in offsets], asynchronous))

    def close(self) -> None:
        self.closed = True

    def committed(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for offsets, _ in self.commits:
            for t, p, o in offsets:
                out[(t, p)] = o
        return out


class RecordingAgent:
    name = "rec"
    topics = (TOPIC,)

    def __init__(self, consumer_log: list[str]) -> None:
        self.log = consumer_log
        self.process_failures: list[BaseException] = []
        self.write_failures: list[BaseException] = []
        self.written: list[list[int]] = []
        self.parked: list[tuple[list[int], str]] = []
        self.forgotten: list[Any] = []
        self.closed = False

    def process(self, records: list[SourceRecord]) -> Staged:
        self.log.append(f"process {[r.offset for r in records]}")
        if self.process_failures:
            raise self.process_failures.pop(0)
        return Staged(records, counts=Counts(records=len(records), applied=len(records)))

    def write(self, staged: Staged) -> None:
        self.log.append(f"write {[r.offset for r in staged.records]}")
        if self.write_failures:
            raise self.write_failures.pop(0)
        self.written.append([r.offset for r in staged.records])

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        self.parked.append(([r.offset for r in records], reason))
        return Staged(records, counts=Counts(records=len(records), dead_letters=len(records)))

    def forget(self, partitions: Sequence[tuple[str, int]] | None) -> None:
        self.log.append(f"forget {partitions}")
        self.forgotten.append(partitions)

    def close(self) -> None:
        self.closed = True


def msgs(partition: int, *offsets: int, topic: str = TOPIC) -> list[Msg]:
    return [Msg(topic, partition, o) for o in offsets]


def run_loop(script: list[Any], agent: RecordingAgent | None = None, **kw: Any) -> tuple[BatchLoop, ScriptedConsumer,
                                                                                           RecordingAgent, list[float]]:
    stop = threading.Event()
    consumer = ScriptedConsumer(script, stop)
    agent = agent or RecordingAgent([])
    sleeps: list[float] = []
    loop = BatchLoop(agent, consumer, max_batch=kw.pop("max_batch", 3), max_wait_s=0.01, sleep=sleeps.append, **kw)
    loop.run(stop)
    return loop, consumer, agent, sleeps


def test_batches_are_written_in_order_and_committed_after_their_writes() -> None:
    loop, consumer, agent, _ = run_loop([msgs(0, 10, 11, 12, 13), msgs(3, 7)])
    assert agent.written == [[10, 11, 12], [13], [7]]
    assert consumer.committed() == {(TOPIC, 0): 14, (TOPIC, 3): 8}
    assert loop.totals == Counts(records=5, applied=5)
    assert consumer.closed and agent.closed
    assert consumer.commits[-1][1] is False  # the last commit, at shut-down, is synchronous


def test_an_infrastructure_error_in_a_write_is_retried_in_place_without_committing() -> None:
    agent = RecordingAgent([])
    agent.write_failures = [SinkError("InfluxDB 503"), KafkaException(KafkaError(KafkaError._TRANSPORT)),
                            RedisConnectionError("refused")]
    _, consumer, agent, sleeps = run_loop([msgs(1, 5, 6)], agent)
    assert agent.log == ["process [5, 6]"] + ["write [5, 6]"] * 4
    assert agent.written == [[5, 6]] and agent.parked == []
    assert sleeps == [0.5, 1.0, 2.0]
    assert consumer.committed() == {(TOPIC, 1): 7}


def test_a_bug_in_process_parks_the_batch_and_the_partition_moves_on() -> None:
    agent = RecordingAgent([])
    agent.process_failures = [KeyError("view")]
    loop, consumer, agent, sleeps = run_loop([msgs(2, 1, 2), msgs(2, 3)], agent, max_batch=2)
    assert agent.parked == [([1, 2], "KeyError: 'view'")]
    assert agent.forgotten == [None]  # the cache may hold half a batch: start again from the store
    assert agent.written == [[1, 2], [3]]  # the parked batch is written too: its dead letters
    assert consumer.committed() == {(TOPIC, 2): 4}
    assert loop.totals == Counts(records=3, applied=1, dead_letters=2)
    assert sleeps == []


def test_an_infrastructure_error_in_process_is_retried() -> None:
    agent = RecordingAgent([])
    agent.process_failures = [RedisConnectionError("loading states")]
    _, _, agent, sleeps = run_loop([msgs(0, 1)], agent)
    assert agent.log == ["process [1]", "process [1]", "write [1]"]
    assert sleeps == [0.5] and agent.parked == []


def test_a_bug_in_write_parks_the_batch_instead() -> None:
    agent = RecordingAgent([])
    agent.write_failures = [ValueError("cannot encode")]
    _, consumer, agent, _ = run_loop([msgs(0, 1, 2)], agent)
    assert agent.parked == [([1, 2], "ValueError: cannot encode")]
    assert agent.forgotten == [None]
    assert consumer.committed() == {(TOPIC, 0): 3}


def test_a_revoke_finishes_the_writes_in_flight_commits_them_then_forgets_the_partition() -> None:
    def revoke(consumer: ScriptedConsumer) -> None:
        consumer.callbacks["on_revoke"](consumer, [TP(TOPIC, 0)])

    _, consumer, agent, _ = run_loop([msgs(0, 1, 2), revoke, msgs(1, 9)])
    assert agent.log.index("write [1, 2]") < agent.log.index("forget [('kuailv.order-events.v1', 0)]")
    sync_commits = [c for c in consumer.commits if c[1] is False]
    assert sync_commits[0][0] == [(TOPIC, 0, 3)]  # committed synchronously, before the partition left
    assert agent.written == [[1, 2], [9]]


def test_renamed_topics_are_consumed_and_committed_under_their_real_names() -> None:
    renames = {TOPIC: "bench-x.order-events"}
    seen: list[str] = []

    class Seeing(RecordingAgent):
        def process(self, records: list[SourceRecord]) -> Staged:
            seen.extend(r.topic for r in records)
            return super().process(records)

    _, consumer, _, _ = run_loop([msgs(0, 1, topic="bench-x.order-events")], Seeing([]), renames=renames)
    assert consumer.subscribed == ["bench-x.order-events"]
    assert seen == [TOPIC]  # agents and their dead letters speak contract names
    assert consumer.committed() == {("bench-x.order-events", 0): 2}


def test_a_failed_sink_thread_stops_the_loop_with_the_cause() -> None:
    agent = RecordingAgent([])
    class Fatal(BaseException):
        pass

    agent.write_failures = [Fatal()]  # not an Exception: nothing to park, the sink thread dies

    def wait(consumer: ScriptedConsumer) -> None:
        import time

        time.sleep(0.2)

    with pytest.raises(RuntimeError, match="sink thread failed"):
        run_loop([msgs(0, 1), wait, msgs(0, 2)], agent)


def test_a_stop_while_a_sink_stays_down_abandons_the_batch_uncommitted_after_the_grace() -> None:
    agent = RecordingAgent([])
    agent.write_failures = [SinkError("Redis down")] * 1000

    stop = threading.Event()
    consumer = ScriptedConsumer([msgs(0, 1, 2)], stop)  # the script ends: stop is set
    loop = BatchLoop(agent, consumer, max_batch=3, max_wait_s=0.01, shutdown_grace_s=0.3)
    import time

    t0 = time.monotonic()
    loop.run(stop)
    assert time.monotonic() - t0 < 10, "shutdown must not wait for a sink that stays down"
    assert agent.written == [] and agent.parked == []
    assert consumer.committed() == {}  # nothing of the abandoned batch is committed
    assert consumer.closed and agent.closed


def test_an_idle_loop_re_sends_the_newest_commit_in_case_an_asynchronous_one_failed() -> None:
    """librdkafka does not retry a failed asynchronous commit (e.g. one sent in a rebalance): the lag
    would stay up (and an autoscaler on it would keep pods) although everything was written."""
    stop = threading.Event()

    class IdleConsumer(ScriptedConsumer):
        idle = 0

        def poll(self, timeout: float) -> Msg | None:
            if not self.pending and not self.script and self.idle < 40:
                self.idle += 1
                time.sleep(0.005)
                return None
            return super().poll(timeout)

    consumer = IdleConsumer([msgs(0, 1, 2)], stop)
    loop = BatchLoop(RecordingAgent([]), consumer, max_batch=3, max_wait_s=0.01, sleep=lambda s: None)
    loop._recommit_s = 0.0
    loop.run(stop)
    assert consumer.commits.count(([(TOPIC, 0, 3)], True)) >= 2
    assert consumer.committed() == {(TOPIC, 0): 3}


def test_a_revoked_partition_is_not_re_sent() -> None:
    def revoke(c: ScriptedConsumer) -> None:
        c.callbacks["on_revoke"](c, [TP(TOPIC, 0)])

    loop, _, _, _ = run_loop([msgs(0, 1, 2), revoke])
    assert (TOPIC, 0) not in loop._committed
