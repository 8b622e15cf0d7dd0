"""What a benchmark leaves in the stack's stores, and how it removes it: a Redis key prefix of its own and an
InfluxDB database of its own (its Kafka topics: ``bench.flink_order_state.create_topics`` / ``delete_topics``)."""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any

import orjson

from config.settings import Settings


def drop_redis_prefix(r: Any, prefix: str) -> None:
    """Delete every key under ``{prefix}:`` (UNLINK, in chunks: a run leaves hundreds of thousands)."""
    batch: list[bytes] = []
    for key in r.scan_iter(f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def influx_statement(s: Settings, q: str, db: str | None = None) -> dict[str, Any]:
    """Run one InfluxQL statement (``CREATE DATABASE``, ``DROP DATABASE``, a count) by POST; the parsed answer."""
    params = {"q": q, **({"db": db} if db else {})}
    req = urllib.request.Request(f"{s.influx_url}/query", data=urllib.parse.urlencode(params).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return orjson.loads(resp.read())
