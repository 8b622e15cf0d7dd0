"""The Flink KPI jobs' Python side (``--projection kpi-exposures|kpi-orders|kpis``, no PyFlink): the three
stages chained through ``TimedProjectionLogic``, fed in any interleaving of topic-partition batches and
restored from keyed state now and then, publish the figures ``kuailv replay --projection kpis`` gives."""

from __future__ import annotations

import pytest

from jobs.timed_projection_logic import TimedProjectionLogic
from projections.kpi_step import STAGES
from projections.timed_batch import TimedBatches
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.partitioning import murmur2_partition
from schemas.topics import ALERTS, DEAD_LETTERS, KPIS, ORDER_STATE, TopicSpec, topic_for_record
from streams.replay_streams import replay_kpis
from tests.unit.jobs.test_timed_projection_logic import DictStore, _source_batches
from tests.unit.streams.test_kpi_replay import day, records

CODEC = AvroCodec(epoch_ms=True)


def _as_topic(out: list[tuple[str, bytes, bytes]], spec: TopicSpec) -> list[SourceRecord]:
    """What a job's sink wrote to ``spec``, as its consumer reads it (murmur2 partitions, offsets in order)."""
    offsets: dict[int, int] = {}
    recs = []
    for topic, key, value in out:
        if topic != spec.name:
            continue
        p = murmur2_partition(key, spec.partitions)
        offsets[p] = offsets.get(p, -1) + 1
        recs.append(SourceRecord(topic, p, offsets[p], key, value, 0))
    return recs


def _job(stage: str, topics: dict[str, list[SourceRecord]], seed: int, size: int, restart: int | None
         ) -> list[tuple[str, bytes, bytes]]:
    names = STAGES[stage][1]  # the job's input_topics(stage)
    steps = TimedBatches(STAGES[stage][0](CODEC), None)
    stores: dict[str, DictStore] = {}
    logic = TimedProjectionLogic(steps, CODEC, "flink:test", names, lambda: 0)
    out = []
    for n, batch in enumerate(_source_batches(topics, names, seed, size)):
        if restart and n and n % restart == 0:
            logic = TimedProjectionLogic(steps, CODEC, "flink:test", names, lambda: 0)
        pkey = f"[{batch[0].partition}]"
        out += logic.add(pkey, batch, stores.setdefault(pkey, DictStore()), 2**62)
    assert not [r for r in out if r[0] == DEAD_LETTERS.name]
    return out


@pytest.mark.parametrize("seed,size,restart", [(1, 25, None), (2, 300, 4)])
def test_the_kpi_jobs_publish_the_replays_figures(seed: int, size: int, restart: int | None) -> None:
    views, alerts = day()
    alert_parts = records(ALERTS.name, ALERTS.partitions, "Alert", "alert_id", list(alerts))
    view_parts = records(ORDER_STATE.name, ORDER_STATE.partitions, "OrderState", "order_id", list(views))
    expected = replay_kpis(CODEC, alert_parts, view_parts).figures()
    topics: dict[str, list[SourceRecord]] = {ALERTS.name: [r for p in alert_parts for r in p],
                                             ORDER_STATE.name: [r for p in view_parts for r in p]}
    exposures = _job("kpi-exposures", topics, seed, size, restart)
    spec = topic_for_record("KpiExposure")
    topics[spec.name] = _as_topic(exposures, spec)
    contributions = _job("kpi-orders", topics, seed + 1, size, restart)
    spec = topic_for_record("KpiContribution")
    topics[spec.name] = _as_topic(contributions, spec)
    figures = {}
    for topic, _, value in _job("kpis", topics, seed + 2, size, restart):
        assert topic == KPIS.name
        f = CODEC.decode(value).value
        figures[f["window_key"]] = f
    assert figures == expected and len(figures) > 10
