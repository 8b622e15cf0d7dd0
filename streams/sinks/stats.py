"""Worker counters in Redis (``{p}:stats:{agent}``), added in the same round trip as a batch's writes."""

from __future__ import annotations

from typing import Any

from projections.keyed_batch import Counts


class StatsSink:
    def __init__(self, client: Any, prefix: str = "kuailv") -> None:
        self._r = client  # synchronous redis.Redis
        self._p = prefix

    def pipeline(self) -> Any:
        return self._r.pipeline(transaction=False)

    def add(self, pipe: Any, agent: str, counts: Counts) -> None:
        key = f"{self._p}:stats:{agent}"
        for name, value in counts.as_dict().items():
            if value:
                pipe.hincrby(key, name, value)
