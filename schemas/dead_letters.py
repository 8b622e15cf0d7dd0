"""Consumed records with their position, and dead letters: the reason and position
of everything a worker or job gave up on. Pure: the worker, Flink and replay share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A consumed Kafka record with its position: what every error message names."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: SourceRecord
    reason_code: str
    reason: str
    event_id: str | None = None
    record_type: str | None = None
    schema_id: int | None = None

    def record(self, consumer: str, failed_at_ms: int) -> dict[str, Any]:
        return {
            "source_topic": self.source.topic,
            "source_partition": self.source.partition,
            "source_offset": self.source.offset,
            "source_timestamp": self.source.timestamp_ms,
            "key": self.source.key,
            "value": self.source.value,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "event_id": self.event_id,
            "record_type": self.record_type,
            "schema_id": self.schema_id,
            "consumer": consumer,
            "failed_at": failed_at_ms,
        }

    def key(self) -> bytes:
        """Position as key: a re-delivered failure overwrites nothing but is easy to dedup."""
        return self.source.position.encode()

    def encode(self, codec: AvroCodec, consumer: str, failed_at_ms: int) -> tuple[str, bytes, bytes]:
        return DEAD_LETTERS.name, self.key(), codec.encode("DeadLetter", self.record(consumer, failed_at_ms))

    def __str__(self) -> str:
        ident = f" event {self.event_id}" if self.event_id else ""
        return f"{self.reason_code} at {self.source.position}{ident}: {self.reason}"
