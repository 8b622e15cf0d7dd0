"""``GET /dashboard/pipeline``: the pipeline's own health, read from Kafka (and the open-alert count from Redis).

* events/s of each input topic: the service samples the topics' end offsets (``streams.kafka_lag.end_offsets``) at
  every read and keeps the last ``KEEP_S`` seconds of samples in process (``OffsetSamples``); the rate is the
  growth between the newest and the oldest sample kept (0 on the first read);
* consumer lag of the worker's groups and the webhook intake's, as ``GET /metrics`` reads it
  (``service.observability.worker_groups``, ``streams.kafka_lag.group_lag``);
* dead letters: how many were ever written (``kuailv.dead-letters.v1``'s end offsets), per second as above, and
  the newest 10 decoded (reason and where the record was).

The answer is cached 3 s (``service.dashboard_reads.TtlCache``); Kafka not answering is 503 naming it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from config.kafka_client import client_config
from config.settings import Settings
from projections.timefmt import iso
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from schemas.topics import DEAD_LETTERS, GPS, ORDER_EVENTS, ROAD_CONDITIONS, SENSORS, STOCK
from service.reads import Unavailable
from streams import queries

INPUT_TOPICS = (ORDER_EVENTS, GPS, SENSORS, ROAD_CONDITIONS, STOCK)  # what the outside world produces
KEEP_S = 30.0
RECENT = 10
log = logging.getLogger(__name__)


class OffsetSamples:
    """Totals per name (end offsets summed over partitions) sampled over time; ``rates`` per second over the
    samples of the last ``keep_s`` seconds."""

    def __init__(self, keep_s: float = KEEP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, totals: Mapping[str, int]) -> dict[str, float]:
        """Keep ``totals`` as now's sample; the rates per second since the oldest sample kept (0 without one)."""
        now = self._clock()
        with self._lock:
            while self._samples and now - self._samples[0][0] > self.keep_s:
                self._samples.popleft()
            oldest = self._samples[0] if self._samples else None
            self._samples.append((now, dict(totals)))
        if oldest is None or now <= oldest[0]:
            return {name: 0.0 for name in totals}
        span = now - oldest[0]
        return {name: round(max(total - oldest[1].get(name, total), 0) / span, 3) for name, total in totals.items()}


def newest_dead_letters(bootstrap: str, topic: str, count: int = RECENT, timeout_s: float = 5.0
                        ) -> list[dict[str, Any]]:
    """The newest ``count`` records of each partition of the dead-letter topic, decoded, newest first, at most
    ``count`` (an undecodable one is skipped)."""
    from confluent_kafka import Consumer, TopicPartition

    codec = AvroCodec(epoch_ms=True)
    c = Consumer({**client_config(bootstrap), "group.id": "kuailv-dashboard-tail", "enable.auto.commit": False})
    found: list[dict[str, Any]] = []
    try:
        parts = c.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        until: dict[int, int] = {}
        assign = []
        for p in sorted(parts):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > max(low, high - count):
                until[p] = high
                assign.append(TopicPartition(topic, p, max(low, high - count)))
        c.assign(assign)
        deadline = time.monotonic() + timeout_s
        while until and time.monotonic() < deadline:
            for msg in c.consume(100, 0.2):
                p = msg.partition()
                if msg.error() or p not in until or msg.offset() >= until[p]:
                    continue
                try:
                    found.append(codec.decode(msg.value()).value)
                except CodecError as exc:
                    log.warning("dead letter %s/%s@%s does not decode: %s", topic, p, msg.offset(), exc)
                if msg.offset() + 1 >= until[p]:
                    del until[p]
    finally:
        c.close()
    found.sort(key=lambda d: (d["failed_at"], d["source_topic"], d["source_partition"], d["source_offset"]),
               reverse=True)
    return [{"reason": d["reason"], "reasonCode": d["reason_code"], "topic": d["source_topic"],
             "partition": d["source_partition"], "offset": d["source_offset"], "atMs": d["failed_at"],
             "consumer": d["consumer"]} for d in found[:count]]


def consumer_lag(settings: Settings) -> dict[str, int]:
    """Records not yet committed per worker group, the groups read in parallel (each read opens two Kafka
    clients); a group whose lag Kafka did not give is left out, logged."""
    from concurrent.futures import ThreadPoolExecutor

    from service.observability import worker_groups
    from streams.kafka_lag import group_lag

    def lag(group: str, topics: tuple[str, ...]) -> int | None:
        try:
            return group_lag(settings.kafka_bootstrap, group, topics, timeout_s=3)
        except Exception as exc:  # one group's failure must not hide the others
            log.warning("consumer lag of %s (%s) not read: %s", group, ", ".join(topics), exc)
            return None

    groups = worker_groups(settings)
    with ThreadPoolExecutor(max_workers=len(groups) or 1, thread_name_prefix="lag") as pool:
        found = dict(zip(groups, pool.map(lag, groups, groups.values()), strict=True))
    return {g: n for g, n in found.items() if n is not None}


def pipeline(settings: Settings, samples: OffsetSamples, now_ms: int) -> dict[str, Any]:
    from streams.kafka_lag import end_offsets

    names = {spec.name: settings.topic_renames.get(spec.name, spec.name) for spec in (*INPUT_TOPICS, DEAD_LETTERS)}
    try:
        ends = end_offsets(settings.kafka_bootstrap, list(names.values()), timeout_s=3)
    except Exception as exc:  # refused, timed out, a topic missing
        raise Unavailable(f"kafka {settings.kafka_bootstrap}: end offsets of {', '.join(names.values())}: "
                          f"{exc!r}") from exc
    totals = {t: 0 for t in names.values()}
    for (topic, _), end in ends.items():
        totals[topic] += end
    rates = samples.add(totals)
    dead = names[DEAD_LETTERS.name]
    try:
        recent = newest_dead_letters(settings.kafka_bootstrap, dead)
    except Exception as exc:
        raise Unavailable(f"kafka {settings.kafka_bootstrap}: the newest records of {dead}: {exc!r}") from exc
    inputs = [names[s.name] for s in INPUT_TOPICS]
    return {"topics": [{"topic": t, "eventsPerSec": rates[t], "endOffset": totals[t]} for t in inputs],
            "consumerLag": consumer_lag(settings),
            "deadLetters": {"total": totals[dead], "perSec": rates[dead], "recent": recent},
            "openAlerts": int(queries.progress(settings)["open_alerts"]), "asOf": iso(now_ms)}
