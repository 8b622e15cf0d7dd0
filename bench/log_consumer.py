"""A consumer double that serves a prepared log, for running the real ``BatchLoop`` in process.

It answers the part of ``confluent_kafka.Consumer`` the loop uses (subscribe, poll,
consume, commit, close) from a list of ``SourceRecord``; ``done`` is set once every
record's offset was committed, i.e. every batch was written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from schemas.dead_letters import SourceRecord


class _Msg:
    __slots__ = ("_r",)

    def __init__(self, r: SourceRecord) -> None:
        self._r = r

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._r.topic

    def partition(self) -> int:
        return self._r.partition

    def offset(self) -> int:
        return self._r.offset

    def key(self) -> bytes | None:
        return self._r.key

    def value(self) -> bytes | None:
        return self._r.value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._r.timestamp_ms or 0) if self._r.timestamp_ms is not None else (0, 0)


class LogConsumer:
    def __init__(self, records: Sequence[SourceRecord]) -> None:
        self._msgs = [_Msg(r) for r in records]
        self._pos = 0
        self._ends: dict[tuple[str, int], int] = {}
        for r in records:
            self._ends[(r.topic, r.partition)] = max(self._ends.get((r.topic, r.partition), -1), r.offset + 1)
        self.committed: dict[tuple[str, int], int] = {}
        self.done = threading.Event()
        if not records:
            self.done.set()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        return None

    def poll(self, timeout: float) -> _Msg | None:
        if self._pos >= len(self._msgs):
            self.done.wait(min(timeout, 0.05))
            return None
        m = self._msgs[self._pos]
        self._pos += 1
        return m

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        out = self._msgs[self._pos:self._pos + num_messages]
        self._pos += len(out)
        return out

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        if all(self.committed.get(k, -1) >= v for k, v in self._ends.items()):
            self.done.set()

    def close(self) -> None:
        return None
