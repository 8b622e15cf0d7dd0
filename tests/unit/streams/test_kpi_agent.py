"""The three KPI agents chained in memory (fake Redis, outputs and InfluxDB): they publish what the
replay computes, keep the figures in Redis, write one ``kpi`` point per window, and a re-delivered
batch changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from projections.keyed_batch import Counts
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, DEAD_LETTERS, KPI_CONTRIBUTIONS, KPI_EXPOSURES, KPIS, ORDER_STATE
from streams.kpi_agent import INTRADAY_MS, KpiAgent, influx_lines, kpi_line
from streams.replay_streams import replay_kpis
from streams.sinks.redis_kpis import RedisKpis
from tests.unit.streams.fakes import FakePointSink, ListOutput
from tests.unit.streams.test_kpi_replay import day, records

codec = AvroCodec(epoch_ms=True)


class MiniRedis:
    """The commands ``RedisKpis`` uses, on dicts; ``pipeline()`` queues them until ``execute``."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def mget(self, keys: list[str]) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self.data[key] = value

    def hset(self, key: str, mapping: dict[str, bytes]) -> None:
        self.data.setdefault(key, {}).update({k.encode(): v for k, v in mapping.items()})

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.data.get(key, {}))

    def sadd(self, key: str, *members: str) -> None:
        self.data.setdefault(key, set()).update(m.encode() for m in members)

    def smembers(self, key: str) -> set[bytes]:
        return set(self.data.get(key, set()))

    def expire(self, key: str, seconds: int) -> None:
        return None

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
        self.totals: dict[str, Counts] = {}

    def pipeline(self) -> Any:
        return self.redis.pipeline()

    def add(self, pipe: Any, agent: str, counts: Counts) -> None:
        self.totals.setdefault(agent, Counts()).add(counts)


class Chain:
    def __init__(self) -> None:
        self.redis = MiniRedis()
        self.store = RedisKpis(self.redis, "t")
        self.output = ListOutput()
        self.influx = FakePointSink()
        self.stats = Stats(self.redis)
        self.agents = {name: KpiAgent(name, codec, self.store, self.influx if name == "kpis" else None, self.output,
                                      self.stats, consumer="test", wall_clock_ms=lambda: 0)
                       for name in ("kpi-exposures", "kpi-orders", "kpis")}

    def run(self, name: str, batch: list[SourceRecord]) -> None:
        agent = self.agents[name]
        agent.write(agent.process(batch))

    def published(self, topic: str) -> list[SourceRecord]:
        return [SourceRecord(topic, 0, i, k, v, None) for i, (k, v) in enumerate(self.output.on(topic))]


@pytest.fixture(scope="module")
def chain() -> Chain:
    views, alerts = day()
    c = Chain()
    c.run("kpi-exposures", [r for p in records(ALERTS.name, 6, "Alert", "alert_id", list(alerts)) for r in p])
    c.run("kpi-orders", c.published(KPI_EXPOSURES.name))
    for p in records(ORDER_STATE.name, 6, "OrderState", "order_id", list(views)):
        for i in range(0, len(p), 50):
            c.run("kpi-orders", p[i:i + 50])
    contributions = c.published(KPI_CONTRIBUTIONS.name)
    for i in range(0, len(contributions), 70):
        c.run("kpis", contributions[i:i + 70])
    return c


def test_the_agents_publish_the_replays_figures(chain: Chain) -> None:
    views, alerts = day()
    replayed = replay_kpis(codec, records(ALERTS.name, 6, "Alert", "alert_id", list(alerts)),
                           records(ORDER_STATE.name, 6, "OrderState", "order_id", list(views))).figures()
    live = {}
    for _, value in chain.output.on(KPIS.name):
        f = codec.decode(value).value
        live[f["window_key"]] = f
    assert live == replayed and len(live) > 10
    assert not chain.output.on(DEAD_LETTERS.name)


def test_figures_in_redis_and_influx(chain: Chain) -> None:
    live = {codec.decode(v).value["window_key"]: codec.decode(v).value for _, v in chain.output.on(KPIS.name)}
    city = next(f for k, f in live.items() if k.startswith("city|"))
    assert chain.store.figures("city", "all", city["day"]) == city
    warehouses = chain.store.day("warehouse", city["day"])
    assert warehouses and [w["dimension_id"] for w in warehouses] == sorted(w["dimension_id"] for w in warehouses)
    points = [p for p in chain.influx.written if p.startswith("kpi,dimension=city,id=all ")]
    assert points[-1] == kpi_line(city)  # the last point of the window (same time: it replaces the earlier ones)
    assert points[-1].endswith(f" {city['day_start']}")
    assert f"fulfilment_rate={city['fulfilment_rate']!r}," in points[-1]


def test_intraday_points_at_the_newest_event_time_floored_to_5_minutes(chain: Chain) -> None:
    live = {codec.decode(v).value["window_key"]: codec.decode(v).value for _, v in chain.output.on(KPIS.name)}
    city = next(f for k, f in live.items() if k.startswith("city|"))
    points = [p for p in chain.influx.written if p.startswith("kpi_intraday,dimension=city,id=all ")]
    times = [int(p.rsplit(" ", 1)[1]) for p in points]
    assert len(set(times)) > 1 and all(t % INTRADAY_MS == 0 for t in times)  # a history through the day
    assert times[-1] == city["as_of"] - city["as_of"] % INTRADAY_MS and times == sorted(times)  # event time
    assert points[-1] == kpi_line(city, "kpi_intraday")
    assert points[-1].split(" ")[1] == kpi_line(city).split(" ")[1]  # the same fields as the kpi point


def test_one_intraday_point_per_window_and_step_in_a_batch() -> None:
    base = {"window_key": "city|all|2026-06-01", "dimension": "city", "dimension_id": "all", "day": "2026-06-01",
            "day_start": 1_780_243_200_000, "orders": 1}
    at = 1_780_293_600_000  # 06:00Z, a 5-minute boundary
    batch = [{**base, "orders": 1, "as_of": at + 1_000}, {**base, "orders": 2, "as_of": at + 299_000},
             {**base, "orders": 3, "as_of": at + 300_000}]
    lines = influx_lines(batch)
    assert lines == [kpi_line(batch[2]), kpi_line(batch[1], "kpi_intraday"), kpi_line(batch[2], "kpi_intraday")]
    assert lines[1].endswith(f"orders=2i {at}") and lines[2].endswith(f"orders=3i {at + 300_000}")
    assert influx_lines(batch) == lines  # re-written (a replay): the same points


def test_a_redelivered_batch_changes_nothing(chain: Chain) -> None:
    before = (len(chain.output.records), dict(chain.redis.data))
    views, _ = day()
    first = records(ORDER_STATE.name, 6, "OrderState", "order_id", list(views))[0]
    chain.run("kpi-orders", first[:50])
    chain.run("kpis", chain.published(KPI_CONTRIBUTIONS.name)[:70])
    assert (len(chain.output.records), chain.redis.data) == before
    assert chain.stats.totals["kpis"].duplicates >= 70
