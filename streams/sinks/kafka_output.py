"""Produce projection and dead-letter records with an idempotent confluent-kafka producer."""

from __future__ import annotations

from typing import Any, Protocol

from config.kafka_client import client_config
from streams.sinks.errors import SinkError


class Output(Protocol):
    """Where a batch's Kafka records go: ``add`` buffers, ``flush`` blocks until all are acknowledged."""

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None) -> None: ...

    def flush(self) -> int: ...


class ProducerLike(Protocol):
    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, on_delivery: Any = None
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


def idempotent_producer_config(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {
        **client_config(bootstrap),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 60_000,
        # Java's default partitioner (murmur2): a Java/Flink producer of the same key picks the same
        # partition, so one order never spans partitions. librdkafka's own default is CRC32.
        "partitioner": "murmur2_random",
    }


def make_producer(bootstrap: str, client_id: str) -> ProducerLike:
    from confluent_kafka import Producer

    return Producer(idempotent_producer_config(bootstrap, client_id))


class KafkaOutput:
    """``add`` buffers into the producer; ``flush`` waits until every record is acked."""

    def __init__(self, producer: ProducerLike, flush_timeout_s: float = 30.0,
                 renames: dict[str, str] | None = None) -> None:
        self._producer = producer
        self._renames = renames or {}  # contract topic name -> the topic actually written
        self._timeout = flush_timeout_s
        self._errors: list[str] = []
        self._pending = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        self._pending -= 1
        if err is not None:
            self._errors.append(f"{msg.topic()} key={msg.key()!r}: {err}")

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None) -> None:
        """Queue a record; ``timestamp_ms`` sets its Kafka timestamp (event time), else the produce time."""
        topic = self._renames.get(topic, topic)
        extra = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery, **extra)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.1)
        self._pending += 1

    def flush(self) -> int:
        """Block until everything added is acknowledged (acks=all). Raises SinkError."""
        count = self._pending
        remaining = self._producer.flush(self._timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise SinkError(f"{remaining} records still unacknowledged after {self._timeout}s")
        if errors:
            raise SinkError(f"{len(errors)} records failed: {'; '.join(errors[:3])}")
        self._pending = 0
        return count
