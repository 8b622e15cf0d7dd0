"""The stock agent in memory (fake Redis, outputs and InfluxDB): it publishes what ``kuailv replay --projection
stock`` computes, keeps levels and suggestions in Redis, writes a ``stock_level`` point per movement, and a
re-delivered batch changes nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from config.alert_rules import load_rules_file
from projections.keyed_batch import Counts
from projections.stock import StockContext, StockProjection
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, DEAD_LETTERS, REPLENISHMENT_SUGGESTIONS
from streams.replay_streams import merged_by_time, replay_stock
from streams.sinks.redis_alerts import RedisAlerts
from streams.sinks.redis_stock import RedisStock
from streams.stock_agent import StockAgent, stock_level_line
from tests.unit.projections.stock_log import movements, topic
from tests.unit.streams.fakes import FakePointSink, ListOutput

codec = AvroCodec(epoch_ms=True)


class MiniRedis:
    """The commands the stock agent's stores use, on dicts; ``pipeline()`` queues them until ``execute``."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def mget(self, keys: list[str]) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self.data[key] = value

    def hset(self, key: str, field: str, value: bytes) -> None:
        self.data.setdefault(key, {})[field.encode()] = value

    def hdel(self, key: str, field: str) -> None:
        self.data.get(key, {}).pop(field.encode(), None)

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.data.get(key, {}))

    def zadd(self, key: str, mapping: dict[str, int]) -> None:
        self.data.setdefault(key, {}).update(mapping)

    def zrem(self, key: str, member: str) -> None:
        self.data.get(key, {}).pop(member, None)

    def pipeline(self) -> Any:
        client = self

        class Pipe:
            def __init__(self) -> None:
                self.calls: list[Callable[[], Any]] = []

            def __getattr__(self, name: str) -> Any:
                return lambda *a, **kw: self.calls.append(lambda: getattr(client, name)(*a, **kw))

            def execute(self) -> None:
                for call in self.calls:
                    call()
                self.calls.clear()

        return Pipe()


class Stats:
    def __init__(self, redis: MiniRedis) -> None:
        self.redis = redis
        self.totals = Counts()

    def pipeline(self) -> Any:
        return self.redis.pipeline()

    def add(self, pipe: Any, agent: str, counts: Counts) -> None:
        self.totals.add(counts)


@pytest.fixture(scope="module")
def run() -> tuple[StockAgent, MiniRedis, ListOutput, FakePointSink, list[SourceRecord]]:
    records = topic(movements(), codec)
    redis, output, influx = MiniRedis(), ListOutput(), FakePointSink()
    projection = StockProjection(codec, StockContext(load_rules_file(), levels=True))
    agent = StockAgent(codec, projection, RedisStock(redis, "t"), RedisAlerts(redis, "t"), influx, output,
                       Stats(redis), consumer="test", wall_clock_ms=lambda: 0, cache_keys=20)  # a small cache
    for i in range(0, len(records), 97):
        agent.write(agent.process(records[i:i + 97]))
    return agent, redis, output, influx, records


def test_the_agent_publishes_what_the_replay_computes(run: Any) -> None:
    agent, _, output, _, records = run
    replay = replay_stock(StockProjection(codec, StockContext(load_rules_file())), merged_by_time([records]))
    live_alerts = {}
    for _, v in output.on(ALERTS.name):
        a = codec.decode(v).value
        live_alerts[a["alert_id"]] = a
    assert live_alerts == replay.alerts() and len(live_alerts) > 5
    live = sorted((codec.decode(v).value for _, v in output.on(REPLENISHMENT_SUGGESTIONS.name)),
                  key=lambda s: s["suggestion_id"])
    assert live == sorted((v for k, v in replay.outputs if k == "replenishment"), key=lambda s: s["suggestion_id"])
    assert not output.on(DEAD_LETTERS.name)
    assert agent.stats.totals.duplicates == 60


def test_levels_and_suggestions_in_redis_and_influx(run: Any) -> None:
    agent, redis, _, influx, records = run
    states = {k.split(":", 2)[2]: orjson.loads(v) for k, v in redis.data.items() if k.startswith("t:stock-state:")}
    wh, sku = next(iter(states)).split("/")
    levels = agent.store.levels(wh)
    assert levels[sku]["on_hand"] == states[f"{wh}/{sku}"]["on_hand"] and levels[sku]["day"].startswith("2026")
    assert len(agent.store.suggestions(wh)) > 5
    assert sum(p.startswith("stock_level,") for p in influx.written) == len(records) - 60  # one per movement applied
    assert stock_level_line({"warehouse_id": wh, "sku": sku, "unit": "KG", "on_hand": 2.5, "picked_today": 1.0,
                             "short_today": 0.0, "event_time": 7}) == \
        f"stock_level,sku={sku},unit=KG,warehouse_id={wh} on_hand=2.5,picked_today=1.0,short_today=0.0 7"


def test_a_redelivered_batch_changes_nothing(run: Any) -> None:
    agent, redis, output, _, records = run
    before = (copy.deepcopy(redis.data), len(output.on(ALERTS.name)), len(output.on(REPLENISHMENT_SUGGESTIONS.name)))
    agent.write(agent.process(records[-200:]))
    assert (redis.data, len(output.on(ALERTS.name)), len(output.on(REPLENISHMENT_SUGGESTIONS.name))) == before
