"""The per-key state a worker keeps between batches (an LRU of bounded size).

The store (Redis) is the durable copy and the read model; this cache only saves the
round trip and the decode for keys the worker owns. Entries remember the partition
their key came from, so a revoked partition drops exactly its keys (another worker
owns them now and the store has the last state this one wrote). Capacity should be a
few times the largest batch: a key whose write is still in flight is among the most
recently used, so it is never evicted before its write lands.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")
Partition = tuple[str, int]


@dataclass(slots=True)
class Entry(Generic[S]):
    state: S
    partition: Partition
    memo: Any = None  # derived data the agent keeps with the state (e.g. the encoded view)


class StateCache(Generic[S]):
    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"state cache needs room for at least one key, got {max_keys}")
        self.max_keys = max_keys
        self._entries: dict[str, Entry[S]] = {}  # insertion order = recency (re-inserted on use)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry[S] | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries[key] = entry
        return entry

    def peek(self, key: str) -> Entry[S] | None:
        """The entry without counting a use."""
        return self._entries.get(key)

    def put(self, key: str, entry: Entry[S]) -> None:
        entries = self._entries
        entries.pop(key, None)
        entries[key] = entry
        if len(entries) > self.max_keys:
            for old in list(itertools.islice(entries, len(entries) - self.max_keys)):
                del entries[old]

    def discard(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def drop_partitions(self, partitions: Iterable[Partition]) -> int:
        gone = set(partitions)
        keys = [k for k, e in self._entries.items() if e.partition in gone]
        self.discard(keys)
        return len(keys)

    def clear(self) -> None:
        self._entries.clear()
