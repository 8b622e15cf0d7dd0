"""The whole write path on real servers: command -> event store -> outbox relay
-> Kafka -> worker -> Redis, the projection topic and InfluxDB.

The simulator drives the command side in-process; the relay and the worker
run as subprocesses, as in production.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from commands.order_service import OrderService
from config import settings as settings_mod
from config.settings import Settings
from projections.order_view import public_view
from streams.simulation_runner import SimulationProgress, simulate_into_system
from streams.sinks.redis_orders import RedisOrderStore
from tests.integration.kafka_helpers import wait_for
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(stack: Settings, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[Settings, SimulationProgress, dict[str, str]]]:
    tag = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("cmd")
    env = {"KUAILV_PROFILE": "test", "KUAILV_EVENTSTORE": f"sqlite:///{tmp / 'events.sqlite'}",
           "KUAILV_CONSUMER_GROUP": f"kuailv-cmd-{tag}", "KUAILV_REDIS_PREFIX": f"cmd{tag}",
           "KUAILV_WORKER_BATCH_SECONDS": "0.1"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    settings = settings_mod.load("test")
    worker = ProjectProcess(["worker", "--loglevel", "warning"], env, tmp / "worker.log").start()
    relay = ProjectProcess(["relay", "--interval", "0.1"], env, tmp / "relay.log").start()
    try:
        progress = simulate_into_system(settings, orders=25, seed=11, speedup=0)
        yield settings, progress, env
    finally:
        for p in (relay, worker):
            p.stop()
        mp.undo()
        print("worker log:\n" + worker.log_tail(20) + "\nrelay log:\n" + relay.log_tail(20))


def test_projection_in_redis_equals_the_command_side_state(system: tuple[Settings, SimulationProgress, Any]) -> None:
    settings, progress, _ = system
    assert progress.refused == 0 and len(progress.order_ids) == 25
    service = OrderService.from_url(settings.eventstore_url)
    expected = {oid: public_view(service.view(oid)) for oid in progress.order_ids}
    store = RedisOrderStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)

    def projected() -> bool:
        for oid, view in expected.items():
            got = store.view(oid)
            if got is None or got["version"] != view["version"]:
                return False
        return True

    wait_for(projected, 120, "every simulated order projected at its command-side version", interval=0.5)
    for oid, view in expected.items():
        assert store.view(oid) == view
    statuses = {v["status"] for v in expected.values()}
    assert "SIGNED" in statuses


def test_simulated_telemetry_lands_in_influxdb(system: tuple[Settings, SimulationProgress, Any]) -> None:
    settings, progress, _ = system
    from simulator.traffic import SimulationConfig, simulate

    # The same run again (pure, deterministic) tells how many GPS points each driver sent.
    start = progress.first_event_ms
    config = SimulationConfig(seed=11, orders=25, start=start)
    pings = [s for s in simulate(config) if getattr(s, "record_type", None) == "GpsPing"]
    assert len(pings) > 100
    last = max(p.at for p in pings)

    def count() -> int:
        q = (f"SELECT count(lat) FROM gps WHERE time >= {start}ms AND time <= {last}ms")
        url = f"{settings.influx_url}/query?" + urllib.parse.urlencode({"db": settings.influx_db, "q": q})
        series = json.load(urllib.request.urlopen(url, timeout=10))["results"][0].get("series")
        return series[0]["values"][0][1] if series else 0

    wait_for(lambda: count() == len(pings), 60, f"{len(pings)} GPS points in InfluxDB")
