"""The Flink job's Python side for ``--projection stock`` (no PyFlink): whatever order the source hands over the
partitions' batches, and across a restore, it publishes what ``kuailv replay --projection stock`` gives."""

from __future__ import annotations

from typing import Any

import pytest

from config.alert_rules import load_rules_file
from projections.stock import StockContext, StockProjection
from projections.timed_batch import TimedBatches
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, REPLENISHMENT_SUGGESTIONS, STOCK
from streams.replay_streams import merged_by_time, replay_stock
from tests.unit.jobs.test_timed_projection_logic import DictStore
from tests.unit.projections.stock_log import movements, topic

CODEC = AvroCodec(epoch_ms=True)


@pytest.fixture(scope="module")
def records() -> list[SourceRecord]:
    return topic(movements(), CODEC)


def steps() -> TimedBatches:
    return TimedBatches(StockProjection(CODEC, StockContext(load_rules_file())), None)


def _flink(records: list[SourceRecord], size: int, restart_every: int | None) -> list[tuple[str, dict[str, Any]]]:
    from jobs.timed_projection_logic import TimedProjectionLogic

    by_partition: dict[int, list[SourceRecord]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    batches = [(p, rs[i:i + size]) for p, rs in sorted(by_partition.items()) for i in range(0, len(rs), size)]
    batches.sort(key=lambda b: (b[1][0].offset, -b[0]))  # partitions interleaved, each in offset order
    stores: dict[str, DictStore] = {}
    logic = TimedProjectionLogic(steps(), CODEC, "flink:test", (STOCK.name,), lambda: 0)
    out = []
    for n, (p, batch) in enumerate(batches):
        if restart_every and n and n % restart_every == 0:
            logic = TimedProjectionLogic(steps(), CODEC, "flink:test", (STOCK.name,), lambda: 0)
        out += logic.add(f"[{p}]", batch, stores.setdefault(f"[{p}]", DictStore()), 2**62)
    kinds = {ALERTS.name: "alert", REPLENISHMENT_SUGGESTIONS.name: "replenishment"}
    return [(kinds[t], CODEC.decode(v).value) for t, _, v in out if t in kinds]


@pytest.mark.parametrize(("size", "restart"), [(50, None), (7, 11)])
def test_stock_job_as_replay(records: list[SourceRecord], size: int, restart: int | None) -> None:
    replay = replay_stock(steps().projection, merged_by_time([records]))
    flink = _flink(records, size, restart)
    assert replay.dead_letters == [] and replay.records == len(records)
    assert sum(k == "replenishment" for k, _ in replay.outputs) > 50 and len(replay.alerts()) > 5

    def per_key(outputs: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for kind, v in outputs:
            out.setdefault(v.get("stock_key") or v["alert_id"].split("/", 2)[2], []).append((kind, v))
        return out

    assert per_key(flink) == per_key(replay.outputs)
