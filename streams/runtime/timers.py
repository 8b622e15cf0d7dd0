"""Event-time timers of a keyed agent: per source partition, a watermark and the keys' next due times.

The decisions are pure (``projections.alert_step.fire_due``, ``projections.geofence_step.fire_silence``);
this keeps the bookkeeping an agent needs to know *which* keys to wake up when a batch moves a
partition's watermark, without scanning every state:

* ``PartitionTimers`` is the in-memory index, partition -> {state key: next due}. It is the one the
  agent reads, because the sink thread may still be writing the previous batch when the next one
  fires timers.
* ``RedisTimers`` mirrors it (a sorted set per partition, scored by due time) and the watermarks (a
  hash), so a restarted worker, or the next owner of a partition, picks up where this one stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Partition = tuple[str, int]


def where(partition: Partition) -> str:
    return f"{partition[0]}:{partition[1]}"


class PartitionTimers:
    def __init__(self, load: Callable[[Partition], dict[str, int]]) -> None:
        self._load = load  # the mirrored index of a partition this worker has not touched yet
        self._by: dict[str, dict[str, int]] = {}

    def index(self, partition: Partition) -> dict[str, int]:
        key = where(partition)
        found = self._by.get(key)
        if found is None:
            found = self._by[key] = self._load(partition)
        return found

    def set(self, key: str, due: int | None, partition: Partition) -> None:
        index = self.index(partition)
        if due is None:
            index.pop(key, None)
        else:
            index[key] = due

    def due(self, partition: Partition, watermark: int) -> list[str]:
        return sorted(k for k, at in self.index(partition).items() if at <= watermark)

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        if partitions is None:
            self._by.clear()
        else:
            for p in partitions:
                self._by.pop(where(p), None)


class RedisTimers:
    """``{prefix}:{name}-timers:{topic}:{partition}`` (zset) and ``{prefix}:{name}-watermarks`` (hash)."""

    def __init__(self, client: Any, prefix: str, name: str) -> None:
        self.client = client
        self._p = f"{prefix}:{name}"

    def key(self, partition: Partition) -> str:
        return f"{self._p}-timers:{where(partition)}"

    def load(self, partition: Partition) -> dict[str, int]:
        rows = self.client.zrange(self.key(partition), 0, -1, withscores=True)
        return {m.decode(): int(score) for m, score in rows}

    def watermarks(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(f"{self._p}-watermarks").items()}

    def save(self, dues: Iterable[tuple[str, Partition, int | None]], watermarks: Mapping[str, int],
             pipe: Any) -> None:
        for key, partition, due in dues:
            if due is None:
                pipe.zrem(self.key(partition), key)
            else:
                pipe.zadd(self.key(partition), {key: due})
        if watermarks:
            pipe.hset(f"{self._p}-watermarks", mapping=dict(watermarks))
