"""A consumed Kafka record with its position: what every error message names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @classmethod
    def from_faust(cls, event: Any) -> SourceRecord:
        msg = event.message
        return cls(msg.topic, msg.partition, msg.offset, msg.key, msg.value, int(msg.timestamp * 1000))

    @classmethod
    def from_confluent(cls, msg: Any) -> SourceRecord:
        ts_type, ts = msg.timestamp()
        return cls(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), ts if ts_type else None)
