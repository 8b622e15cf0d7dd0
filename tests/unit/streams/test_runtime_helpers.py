"""CachedStates (cache first, store on a miss, invalidations from other threads) and PartitionTimers."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from streams.runtime.keyed_states import CachedStates
from streams.runtime.timers import PartitionTimers


class Store:
    def __init__(self) -> None:
        self.data = {"a": 1, "b": 2, "c": 3}
        self.loads: list[list[str]] = []

    def load(self, keys: Sequence[str]) -> dict[str, int]:
        self.loads.append(list(keys))
        return {k: self.data[k] for k in keys if k in self.data}


def test_cache_first_then_one_store_read_for_the_misses() -> None:
    store = Store()
    states: CachedStates[int] = CachedStates(store.load, max_keys=10)
    states.put("a", 10, ("t", 0))
    assert states(["a", "b", "x"]) == {"a": 10, "b": 2}
    assert store.loads == [["b", "x"]]


def test_invalidations_from_another_thread_apply_before_the_next_batch() -> None:
    store = Store()
    states: CachedStates[int] = CachedStates(store.load, max_keys=10)
    states.put("a", 10, ("t", 0))
    states.put("b", 20, ("t", 1))
    states.put("c", 30, ("t", 1))
    t = threading.Thread(target=lambda: (states.forget([("t", 1)]), states.discard(["a"])))
    t.start()
    t.join()
    assert states(["a", "b", "c"]) == {"a": 10, "b": 20, "c": 30}  # nothing applied yet
    assert states.apply_invalidations() == [[("t", 1)]]
    assert states(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}  # all three read from the store again
    assert states.apply_invalidations() == []
    states.forget(None)
    assert states.apply_invalidations() == [None] and len(states.cache) == 0


def test_partition_timers_load_once_and_report_what_is_due() -> None:
    loaded: list[tuple[str, int]] = []

    def load(partition: tuple[str, int]) -> dict[str, int]:
        loaded.append(partition)
        return {"k1": 100, "k2": 300} if partition == ("t", 0) else {}

    timers = PartitionTimers(load)
    assert timers.due(("t", 0), 200) == ["k1"]
    timers.set("k3", 150, ("t", 0))
    timers.set("k1", None, ("t", 0))
    assert timers.due(("t", 0), 300) == ["k2", "k3"]
    assert timers.due(("t", 1), 10**12) == []
    assert loaded == [("t", 0), ("t", 1)]
    timers.forget([("t", 0)])
    assert timers.due(("t", 0), 200) == ["k1"] and loaded[-1] == ("t", 0)  # reloaded from the mirror
