"""Consumer-group lag: how far a group's committed offsets trail the topic ends."""

from __future__ import annotations

from collections.abc import Sequence

from config.kafka_client import client_config


def end_offsets(bootstrap: str, topics: Sequence[str], timeout_s: float = 10.0) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**client_config(bootstrap), "group.id": "kuailv-lag-probe", "enable.auto.commit": False})
    try:
        meta = c.list_topics(timeout=timeout_s)
        out = {}
        for t in topics:
            for p in meta.topics[t].partitions:
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=timeout_s)[1]
        return out
    finally:
        c.close()


def group_lag(bootstrap: str, group: str, topics: Sequence[str], timeout_s: float = 10.0) -> int:
    """Records not yet committed by ``group`` (a partition never committed counts from 0)."""
    from confluent_kafka import Consumer, TopicPartition

    ends = end_offsets(bootstrap, topics, timeout_s)
    c = Consumer({**client_config(bootstrap), "group.id": group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(t, p) for t, p in ends], timeout=timeout_s)
    finally:
        c.close()
    lag = 0
    for tp in committed:
        done = tp.offset if tp.offset >= 0 else 0
        lag += max(ends[(tp.topic, tp.partition)] - done, 0)
    return lag
