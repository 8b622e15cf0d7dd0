"""The workers' key cache: a bounded TTL, an injected clock, and invalidation on destroy and rotate."""

from __future__ import annotations

import pytest

from privacy.keystore import CachedKeyStore, KeyErased, SqliteKeyStore

MASTER = bytes(range(32))


class Counting:
    """The real (in-memory) store, counting the calls that reach it."""

    def __init__(self) -> None:
        self.store = SqliteKeyStore(None, MASTER)
        self.calls: list[str] = []

    def current(self, subject: str) -> tuple[int, bytes]:
        self.calls.append(f"current {subject}")
        return self.store.current(subject)

    def key(self, subject: str, version: int) -> bytes:
        self.calls.append(f"key {subject} v{version}")
        return self.store.key(subject, version)

    def destroy(self, subject: str) -> int:
        return self.store.destroy(subject)

    def erased(self, subject: str) -> bool:
        self.calls.append(f"erased {subject}")
        return self.store.erased(subject)

    def rotate(self, subject: str) -> int:
        return self.store.rotate(subject)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cached(ttl_s: float = 30.0, max_entries: int = 100) -> tuple[CachedKeyStore, Counting, Clock]:
    inner, clock = Counting(), Clock()
    return CachedKeyStore(inner, ttl_s, clock=clock, max_entries=max_entries), inner, clock


def test_a_key_is_served_from_memory_until_its_ttl_passes() -> None:
    keys, inner, clock = cached(ttl_s=30)
    version, key = keys.current("customer:A")
    assert keys.current("customer:A") == (version, key)
    assert keys.key("customer:A", version) == key  # current() also cached the version it returned
    assert inner.calls == ["current customer:A"]
    clock.now += 29.9
    keys.key("customer:A", 1)
    assert len(inner.calls) == 1
    clock.now += 0.1  # expired at exactly ttl
    assert keys.key("customer:A", 1) == key
    assert keys.current("customer:A") == (1, key)
    assert inner.calls == ["current customer:A", "key customer:A v1", "current customer:A"]


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    keys, inner, _ = cached(max_entries=3)
    for s in ("customer:A", "customer:B", "customer:C", "customer:D"):
        inner.store.current(s)  # the keys exist (created behind the cache)
    for s in ("customer:A", "customer:B", "customer:C"):
        keys.key(s, 1)
    keys.key("customer:A", 1)  # A is now the most recently used
    keys.key("customer:D", 1)
    assert len(keys) == 3
    inner.calls.clear()
    keys.key("customer:A", 1)
    keys.key("customer:B", 1)  # B was the least recently used: evicted
    assert inner.calls == ["key customer:B v1"]


def test_destroy_and_rotate_through_the_cache_take_effect_at_once() -> None:
    keys, _, _ = cached(ttl_s=3600)
    _, old = keys.current("customer:A")
    assert keys.rotate("customer:A") == 2
    version, new = keys.current("customer:A")
    assert version == 2 and new != old
    assert keys.destroy("customer:A") == 2
    assert keys.erased("customer:A")
    with pytest.raises(KeyErased):
        keys.key("customer:A", 1)
    with pytest.raises(KeyErased):
        keys.current("customer:A")


def test_a_destroy_elsewhere_is_seen_after_invalidate_or_within_the_ttl() -> None:
    keys, inner, _ = cached(ttl_s=60)
    keys.current("driver:D")
    inner.store.destroy("driver:D")  # another process erased the driver
    assert keys.key("driver:D", 1)  # still cached: the documented bound
    keys.invalidate("driver:D")
    with pytest.raises(KeyErased):
        keys.key("driver:D", 1)
    keys2, inner2, clock2 = cached(ttl_s=60)
    keys2.current("driver:E")
    inner2.store.destroy("driver:E")
    clock2.now += 60
    with pytest.raises(KeyErased):
        keys2.key("driver:E", 1)


def test_erased_is_never_cached_and_bad_settings_are_refused() -> None:
    keys, inner, _ = cached()
    keys.erased("customer:A")
    keys.erased("customer:A")
    assert inner.calls == ["erased customer:A", "erased customer:A"]
    with pytest.raises(ValueError):
        CachedKeyStore(inner, -1)
    with pytest.raises(ValueError):
        CachedKeyStore(inner, 1, max_entries=0)
