"""Adapters from the Kafka clients' message objects to ``SourceRecord``."""

from __future__ import annotations

from typing import Any

from schemas.dead_letters import SourceRecord

__all__ = ["SourceRecord", "from_confluent"]


def from_confluent(msg: Any) -> SourceRecord:
    ts_type, ts = msg.timestamp()
    return SourceRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), ts if ts_type else None)
