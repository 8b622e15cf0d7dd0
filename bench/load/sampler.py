"""The once-a-second sampler (a thread of the harness): what was produced, what each agent applied,
the lag of every consumer group, and RSS / CPU of every process tree. Every sample is kept.

* produced: the producer's per-topic counters (shared memory), cumulative;
* applied: the workers' counters in Redis (``{prefix}:stats:{agent}``, ``streams/sinks/stats.py``: the
  same numbers ``kuailv stats`` prints), cumulative ``records`` and ``applied`` per agent;
* lag: per group, the topics' end offsets minus the group's committed offsets (as
  ``streams.kafka_lag.group_lag`` computes it), through one long-lived AdminClient instead of two new
  consumers a read;
* processes: RSS (MiB) and cumulative CPU seconds of each process and its children (psutil).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from streams.worker import AGENTS


def consumer_groups(group: str) -> dict[str, tuple[str, ...]]:
    """Every group the pipeline's processes consume in, and its topics."""
    from config import settings as settings_mod
    from projections.kpi_step import STAGES
    from service.observability import worker_groups
    from streams.stock_agent import StockAgent

    s = dataclasses.replace(settings_mod.load(), consumer_group=group, topic_renames={})
    groups = dict(worker_groups(s))
    for stage, (_, topics) in STAGES.items():
        groups[f"{group}-{stage}"] = tuple(topics)
    groups[group + StockAgent.group_suffix] = tuple(StockAgent.topics)
    return groups


class LagReader:
    """Topic ends and every group's committed offsets through one AdminClient, all requests in flight at
    once (one sample costs a few round trips, not one per partition)."""

    def __init__(self, bootstrap: str, groups: dict[str, tuple[str, ...]]) -> None:
        from confluent_kafka.admin import AdminClient

        from config.kafka_client import client_config

        self.groups = groups
        self.admin = AdminClient(client_config(bootstrap))
        meta = self.admin.list_topics(timeout=10)
        self.partitions = {t: sorted(meta.topics[t].partitions) for ts in groups.values() for t in ts}

    def end_offsets(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        request = {TopicPartition(t, p): OffsetSpec.latest() for t, ps in self.partitions.items() for p in ps}
        futures = self.admin.list_offsets(request, request_timeout=5)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def commit_ends(self) -> None:
        """Start every group at the topics' ends: a run reads only its own records."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        ends = self.end_offsets()
        for g, topics in self.groups.items():
            tps = [TopicPartition(t, p, ends[(t, p)]) for t in topics for p in self.partitions[t]]
            for f in self.admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(g, tps)]).values():
                f.result()

    def lag(self) -> dict[str, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        futures = {}
        for g, topics in self.groups.items():
            tps = [TopicPartition(t, p) for t in topics for p in self.partitions[t]]
            futures[g] = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g, tps)],
                                                                request_timeout=5)[g]
        ends = self.end_offsets()
        out = {}
        for g, f in futures.items():
            committed = f.result().topic_partitions
            out[g] = sum(max(ends[(tp.topic, tp.partition)] - max(tp.offset, 0), 0) for tp in committed)
        return out

    def delete_groups(self, wait_s: float = 20.0) -> None:
        """Remove the run's groups once their members have left (a killed member stays until its session
        times out): the load stack keeps no state of old runs."""
        left, deadline = list(self.groups), time.monotonic() + wait_s
        while left:
            futures = self.admin.delete_consumer_groups(left, request_timeout=10)
            left, errors = [], []
            for g, f in futures.items():
                try:
                    f.result()
                except Exception as exc:
                    if "GROUP_ID_NOT_FOUND" not in str(exc):
                        left.append(g)
                        errors.append(f"{g}: {exc}")
            if left and time.monotonic() > deadline:
                print("consumer groups not deleted: " + "; ".join(errors))
                return
            if left:
                time.sleep(2)


def tree_usage(pid: int) -> tuple[float, float] | None:
    """(RSS MiB, CPU seconds) of ``pid`` and its children; None once it is gone."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    rss = cpu = 0.0
    for p in procs:
        try:
            rss += p.memory_info().rss
            t = p.cpu_times()
            cpu += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return rss / 2**20, cpu


class Sampler(threading.Thread):
    def __init__(self, lag: LagReader, redis_client: Any, prefix: str, produced: Callable[[], dict[str, int]],
                 processes: Callable[[], dict[str, int]], behind: Callable[[], float] = lambda: 0.0,
                 every_s: float = 1.0) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.lag_reader, self.redis, self.prefix = lag, redis_client, prefix
        self.produced, self.processes, self.behind, self.every_s = produced, processes, behind, every_s
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def applied(self) -> dict[str, dict[str, int]]:
        pipe = self.redis.pipeline(transaction=False)
        for agent in AGENTS:
            pipe.hgetall(f"{self.prefix}:stats:{agent}")
        out = {}
        for agent, h in zip(AGENTS, pipe.execute(), strict=True):
            out[agent] = {k.decode(): int(v) for k, v in h.items()}
        return out

    def sample(self) -> dict[str, Any]:
        t = time.time()
        procs = {}
        for name, pid in self.processes().items():
            usage = tree_usage(pid)
            procs[name] = None if usage is None else {"rss_mib": round(usage[0], 1), "cpu_s": round(usage[1], 2)}
        try:
            lag: dict[str, int] | None = self.lag_reader.lag()
        except Exception as exc:  # a slow Kafka answer costs one sample's lag, not the run
            lag = None
            procs["_lag_error"] = str(exc)  # type: ignore[assignment]
        return {"t": round(t, 3), "produced": self.produced(), "behind_ms": round(self.behind() * 1000, 1),
                "applied": self.applied(), "lag": lag,
                "procs": procs, "sample_s": round(time.time() - t, 3)}

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.samples.append(self.sample())
            next_at += self.every_s
            self.stop.wait(max(next_at - time.monotonic(), 0.0))
