"""An in-memory stand-in for ``confluent_kafka.Producer`` (unit tests only).

Same contract as the real client, as far as the relay uses it: ``produce()``
queues a record and may raise ``BufferError``; delivery reports are served by
``poll()``/``flush()``, which call ``on_delivery(err, msg)``; ``flush()``
returns the number of records still queued. ``relay_contract.py`` runs the
same assertions against this fake and against the real broker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError


class FakeBroker:
    def __init__(self) -> None:
        self.topics: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)

    def read_all(self, topic: str) -> list[tuple[bytes, bytes]]:
        return list(self.topics[topic])


class FakeProducer:
    def __init__(self, broker: FakeBroker, *, deliver_ok: int | None = None, buffer_errors: int = 0) -> None:
        """``deliver_ok``: deliver that many records, fail every later one (None: never fail).
        ``buffer_errors``: the first N ``produce`` calls raise BufferError (queue full)."""
        self.broker = broker
        self.deliver_ok = deliver_ok
        self.buffer_errors = buffer_errors
        self.delivered = 0
        self.produce_calls = 0
        self.polls = 0
        self._queue: list[tuple[str, bytes | None, bytes | None, Callable[[Any, Any], None] | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, *args: Any,
                on_delivery: Callable[[Any, Any], None] | None = None, **kwargs: Any) -> None:
        self.produce_calls += 1
        if self.buffer_errors > 0:
            self.buffer_errors -= 1
            raise BufferError("Local: Queue full")
        self._queue.append((topic, key, value, on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        self.polls += 1
        served = 0
        while self._queue:
            topic, key, value, callback = self._queue.pop(0)
            error = None
            if self.deliver_ok is not None and self.delivered >= self.deliver_ok:
                error = KafkaError(KafkaError._MSG_TIMED_OUT)
            else:
                self.broker.topics[topic].append((key or b"", value or b""))
                self.delivered += 1
            if callback is not None:
                callback(error, None)
            served += 1
        return served

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return len(self._queue)
