"""Which partition a key lands in: Kafka's default partitioner (murmur2), as every producer of the
project uses (librdkafka ``murmur2_random``, Java's default). Pure.

Readers that must find one key's records without reading the whole topic (the API rebuilding one
order from the log) use it to read one partition."""

from __future__ import annotations


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner and librdkafka's ``murmur2_random`` pick for ``key``."""
    m, r, length = 0x5BD1E995, 24, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length % 4
    tail = key[length - rest:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
