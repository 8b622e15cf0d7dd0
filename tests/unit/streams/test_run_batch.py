"""run_batch: infrastructure errors are retried until the batch succeeds; any
other exception parks the whole batch in the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import streams.resources as resources_mod
from schemas.dead_letters import DeadLetter
from schemas.topics import ORDER_EVENTS
from simulator.events import T0
from streams.batch_stats import BatchStats
from streams.resources import run_batch
from streams.sinks.errors import SinkError
from streams.source import SourceRecord

BATCH = [SourceRecord(ORDER_EVENTS.name, 2, 40 + i, f"O-{i}".encode(), b"\x00\x00\x00\x00\x03" + bytes([i]), T0 + i)
         for i in range(4)]


class FakeResources:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, BatchStats]] = []

    async def record_stats(self, name: str, stats: BatchStats) -> None:
        self.recorded.append((name, stats))


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, failures: Sequence[BaseException]) -> None:
        self.failures = list(failures)
        self.calls = 0
        self.sleeps: list[float] = []
        self.parked: list[list[DeadLetter]] = []
        self.resources = FakeResources()

        async def no_wait(delay: float) -> None:
            self.sleeps.append(delay)

        monkeypatch.setattr(resources_mod.asyncio, "sleep", no_wait)

    async def process(self, batch: Sequence[SourceRecord]) -> BatchStats:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return BatchStats(records=len(batch), applied=len(batch), orders_written=2)

    async def park(self, dead: Sequence[DeadLetter]) -> None:
        self.parked.append(list(dead))

    def run(self) -> BatchStats:
        return asyncio.run(run_batch("orders", self.process, BATCH, self.resources, self.park))  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [
    SinkError("3 records still unacknowledged after 30.0s"),
    RedisConnectionError("Error 111 connecting to 127.0.0.1:26379. Connection refused."),
    RedisTimeoutError("Timeout reading from socket"),
    KafkaException(KafkaError(KafkaError._TRANSPORT)),
    ConnectionRefusedError(111, "Connection refused"),
], ids=lambda e: type(e).__name__)
def test_infrastructure_errors_are_retried_until_the_batch_succeeds(monkeypatch: pytest.MonkeyPatch,
                                                                     error: Exception) -> None:
    h = Harness(monkeypatch, [error, error])
    stats = h.run()
    assert h.calls == 3
    assert h.sleeps == [0.5, 1.0]  # exponential backoff, never acking meanwhile
    assert h.parked == []
    assert stats == BatchStats(records=4, applied=4, orders_written=2)
    assert h.resources.recorded == [("orders", stats)]


def test_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, [SinkError("down")] * 9)
    h.run()
    assert h.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_bug_parks_the_whole_batch_as_processing_error(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, [KeyError("order_id")])
    stats = h.run()
    assert h.calls == 1 and h.sleeps == []
    [parked] = h.parked
    assert [d.source for d in parked] == BATCH
    assert {d.reason_code for d in parked} == {"PROCESSING_ERROR"}
    assert {d.reason for d in parked} == {"KeyError: 'order_id'"}
    assert stats == BatchStats(records=4, dead_letters=4)


def test_parked_dead_letters_are_counted_in_the_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stats hash ({p}:stats:orders, shown by `progress`) is the dead-letter counter of
    # DESIGN principle 4; a parked batch must show up in it like any other dead letter.
    h = Harness(monkeypatch, [ValueError("boom")])
    stats = h.run()
    assert h.resources.recorded == [("orders", stats)]


def test_a_failed_park_is_retried_after_a_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, [ValueError("boom"), ValueError("boom")])
    attempts: list[int] = []

    async def flaky_park(dead: Sequence[DeadLetter]) -> None:
        attempts.append(len(dead))
        if len(attempts) == 1:
            raise SinkError("dead-letter topic unreachable")
        h.parked.append(list(dead))

    h.park = flaky_park  # type: ignore[method-assign]
    stats = h.run()
    assert attempts == [4, 4] and len(h.parked) == 1
    assert h.calls == 2  # the loop runs the batch again before parking it again
    assert h.sleeps == [0.5]
    assert stats == BatchStats(records=4, dead_letters=4)
