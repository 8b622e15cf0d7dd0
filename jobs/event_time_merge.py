"""Co-partitioned inputs merged by event time inside a Flink operator, the way ``kuailv replay`` merges them.

The geofence job reads ``kuailv.gps.v1`` and ``kuailv.van-orders.v1`` (the alert job: order events and
sensor readings). Flink's source hands the Python operator one batch per topic-partition, in
whatever order its split readers progress: on a backlog it can read a whole hour of pings before
the van order that put an order on the van. Folding them in arrival order would make the result
depend on the reader's pace.

So the operator holds each topic-partition's records in offset order and releases them only once
the job's watermark (Flink's, from the Kafka timestamps = event times) has passed them, always the
head with the smallest timestamp first (ties: the earlier topic of ``topics``). That is exactly
``streams.replay_streams.merged_by_time`` cut at the watermark: the global smallest head is
released while its timestamp is at or below the watermark. Records behind the watermark when they
arrive (late beyond the source's out-of-orderness) are released at the next step, in offset order
among their topic-partition; the projection judges their lateness itself (LATE_EVENT).

Pure (no PyFlink): the job stores ``dump()`` in keyed state and ``load()``s it after a restore.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from jobs.flink_batches import read_batch, write_batch
from schemas.dead_letters import SourceRecord


class EventTimeMerge:
    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = tuple(topics)
        self._rank = {t: i for i, t in enumerate(self.topics)}
        self._queues: dict[str, deque[SourceRecord]] = {t: deque() for t in self.topics}

    def add(self, records: Iterable[SourceRecord]) -> set[str]:
        """Append records (one topic-partition's, in offset order); returns the topics that changed."""
        touched = set()
        for rec in records:
            queue = self._queues.get(rec.topic)
            if queue is None:
                raise ValueError(f"record of {rec.topic}[{rec.partition}]@{rec.offset}: not an input of this merge "
                                 f"({', '.join(self.topics)})")
            queue.append(rec)
            touched.add(rec.topic)
        return touched

    def release(self, watermark: int) -> tuple[list[SourceRecord], set[str]]:
        """The records now behind ``watermark``, in merge order, and the topics whose queue changed."""
        heap = [(_ts(q[0]), self._rank[t], t) for t, q in self._queues.items() if q]
        heapq.heapify(heap)
        out: list[SourceRecord] = []
        touched: set[str] = set()
        while heap and heap[0][0] <= watermark:
            _, rank, topic = heapq.heappop(heap)
            queue = self._queues[topic]
            out.append(queue.popleft())
            touched.add(topic)
            if queue:
                heapq.heappush(heap, (_ts(queue[0]), rank, topic))
        return out, touched

    def next_due(self) -> int | None:
        """The watermark at which the next record can be released (None: nothing held)."""
        heads = [_ts(q[0]) for q in self._queues.values() if q]
        return min(heads) if heads else None

    def held(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def dump(self, topic: str) -> bytes | None:
        """``topic``'s held records as one ``flink_batches`` batch (None when empty)."""
        queue = self._queues[topic]
        return write_batch(queue) if queue else None

    @classmethod
    def load(cls, topics: Sequence[str], dumped: Mapping[str, bytes]) -> EventTimeMerge:
        merge = cls(topics)
        for data in dumped.values():
            if data:
                merge.add(read_batch(data))
        return merge


def _ts(rec: SourceRecord) -> int:
    return rec.timestamp_ms if rec.timestamp_ms is not None else 0
