"""``kuailv worker``: the always-on projection worker.

One process runs one ``BatchLoop`` per agent (``orders``, ``telemetry``, ``geofences``,
``alerts``, ``fleet``, the KPI stages, ``stock``), each in its own thread with its own consumer:
the order agent in the group ``KUAILV_CONSUMER_GROUP``, every other agent in ``<group>-<suffix>``
(``-telemetry``, ``-geofences``, ``-alerts``, ...; an agent that reads co-partitioned topics, or
several topics that must be shared evenly, uses the range assignor). Start more processes with the
same group to scale out: Kafka spreads the partitions (cooperative-sticky rebalancing where the
agent allows it, so a joining worker does not stop the others). SIGTERM/SIGINT finish the
batch in hand, write it, commit and exit 0. Clients are created here, at start-up, never
at import.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from config.settings import Settings
from schemas.codec import AvroCodec
from streams.projection_builders import alert_projection, fleet_projection, geofence_projection
from streams.runtime import tune_gc
from streams.runtime.batch_loop import Agent, BatchLoop, consumer_config
from streams.runtime.signals import stop_on_signals

log = logging.getLogger(__name__)
# Agents whose batches may be larger than KUAILV_WORKER_BATCH_SIZE. A batch takes only what is already fetched,
# so a larger cap changes nothing while the agent keeps up; behind, it amortises a per-batch cost: telemetry's
# InfluxDB POST, and the fleet's one state (every van of the city, saved whole per batch: ~9 MB at 4,000 vans,
# 80 ms to serialise, so 500-record batches capped the agent at ~700 records/s in the load test).
BATCH_FACTOR = {"telemetry": 4, "fleet": 20}
AGENTS = ("orders", "telemetry", "geofences", "alerts", "fleet", "kpi-exposures", "kpi-orders", "kpis", "stock")


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def make_codec(settings: Settings, *, epoch_ms: bool = True) -> AvroCodec:
    if settings.schema_registry_url:
        from streams.schema_registry import RegistryCatalog

        return AvroCodec(RegistryCatalog.connect(settings.schema_registry_url), epoch_ms=epoch_ms)
    return AvroCodec(epoch_ms=epoch_ms)


def consumer_name(settings: Settings) -> str:
    return f"{settings.consumer_group}@{socket.gethostname()}"


def build_agent(name: str, settings: Settings, codec: AvroCodec, redis_client: Any) -> Agent:
    from streams.sinks.kafka_output import KafkaOutput, make_producer
    from streams.sinks.stats import StatsSink

    consumer = consumer_name(settings)
    output = KafkaOutput(make_producer(settings.kafka_bootstrap, f"{consumer}/{name}"),
                         renames=settings.topic_renames)
    stats = StatsSink(redis_client, settings.redis_prefix)
    if name == "orders":
        from streams.order_agent import OrderStateAgent
        from streams.sinks.redis_orders import RedisOrderStore

        store = RedisOrderStore(redis_client, settings.redis_prefix, codec)
        return OrderStateAgent(codec, store, output, stats, consumer=consumer, wall_clock_ms=wall_clock_ms,
                               cache_keys=settings.state_cache_keys)
    if name == "telemetry":
        from streams.sinks.influx import InfluxWriter
        from streams.sinks.redis_positions import RedisDriverPositions
        from streams.telemetry_agent import TelemetryAgent

        return TelemetryAgent(codec, InfluxWriter(settings.influx_url, settings.influx_db),
                              RedisDriverPositions(redis_client, settings.redis_prefix), output, stats,
                              consumer=consumer, wall_clock_ms=wall_clock_ms)
    from streams.runtime.timers import RedisTimers
    from streams.sinks.redis_alerts import RedisAlerts

    if name == "geofences":
        from streams.geofence_agent import GeofenceAgent
        from streams.sinks.influx import InfluxWriter
        from streams.sinks.redis_geofences import RedisGeofenceStates

        projection = geofence_projection(settings, codec)
        return GeofenceAgent(codec, projection, RedisGeofenceStates(redis_client, settings.redis_prefix), output,
                             stats, consumer=consumer, wall_clock_ms=wall_clock_ms,
                             cache_keys=settings.state_cache_keys,
                             alerts=RedisAlerts(redis_client, settings.redis_prefix),
                             timers=RedisTimers(redis_client, settings.redis_prefix, "geofence"),
                             influx=InfluxWriter(settings.influx_url, settings.influx_db))
    if name == "alerts":
        from streams.alert_agent import AlertAgent
        from streams.runtime.timers import RedisTimers
        from streams.sinks.influx import InfluxWriter

        return AlertAgent(codec, alert_projection(settings, codec), RedisAlerts(redis_client, settings.redis_prefix),
                          RedisTimers(redis_client, settings.redis_prefix, "alert"),
                          InfluxWriter(settings.influx_url, settings.influx_db), output, stats, consumer=consumer,
                          wall_clock_ms=wall_clock_ms, lateness_ms=settings.alert_lateness_ms,
                          cache_keys=settings.state_cache_keys)
    if name == "fleet":
        from streams.fleet_agent import FleetAgent
        from streams.sinks.influx import InfluxWriter
        from streams.sinks.redis_fleet import RedisFleet

        return FleetAgent(codec, fleet_projection(settings, codec), RedisFleet(redis_client, settings.redis_prefix),
                          RedisAlerts(redis_client, settings.redis_prefix),
                          InfluxWriter(settings.influx_url, settings.influx_db), output, stats, consumer=consumer,
                          wall_clock_ms=wall_clock_ms)
    if name in ("kpi-exposures", "kpi-orders", "kpis"):  # the KPI stages (docs/kpis.md)
        from streams.kpi_agent import KpiAgent
        from streams.sinks.influx import InfluxWriter
        from streams.sinks.redis_kpis import RedisKpis

        influx = InfluxWriter(settings.influx_url, settings.influx_db) if name == "kpis" else None
        return KpiAgent(name, codec, RedisKpis(redis_client, settings.redis_prefix), influx, output, stats,
                        consumer=consumer, wall_clock_ms=wall_clock_ms, cache_keys=settings.state_cache_keys)
    if name == "stock":  # stock levels, low-stock alerts, replenishment suggestions (docs/stock.md)
        from streams.projection_builders import stock_projection
        from streams.sinks.influx import InfluxWriter
        from streams.sinks.redis_stock import RedisStock
        from streams.stock_agent import StockAgent

        return StockAgent(codec, stock_projection(settings, codec, levels=True),
                          RedisStock(redis_client, settings.redis_prefix),
                          RedisAlerts(redis_client, settings.redis_prefix),
                          InfluxWriter(settings.influx_url, settings.influx_db), output, stats, consumer=consumer,
                          wall_clock_ms=wall_clock_ms, cache_keys=settings.state_cache_keys)
    raise ValueError(f"unknown agent {name!r}; known: {', '.join(AGENTS)}")


def make_loop(agent: Agent, settings: Settings, *, max_batch: int | None = None) -> BatchLoop:
    from confluent_kafka import Consumer

    client_id = f"{consumer_name(settings)}/{agent.name}"
    group = settings.consumer_group + getattr(agent, "group_suffix", "")
    overrides: dict[str, Any] = {"session.timeout.ms": settings.consumer_session_timeout_ms}
    if hasattr(agent, "assignor"):
        overrides["partition.assignment.strategy"] = agent.assignor
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, group, client_id, **overrides))
    batch = max_batch or settings.worker_batch_size * BATCH_FACTOR.get(agent.name, 1)
    return BatchLoop(agent, consumer, max_batch=batch, max_wait_s=settings.worker_batch_seconds,
                     renames=settings.topic_renames)


def run_agents(settings: Settings, names: Sequence[str], stop: threading.Event,
               on_loop: Callable[[BatchLoop], None] | None = None) -> int:
    """Run the agents until ``stop`` is set or one of them fails; 0 on a clean stop."""
    import redis

    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=30, health_check_interval=30)
    codec = make_codec(settings)
    loops = [make_loop(build_agent(n, settings, codec, redis_client), settings) for n in names]
    tune_gc()
    failures: list[str] = []

    def run(loop: BatchLoop) -> None:
        try:
            if on_loop:
                on_loop(loop)
            loop.run(stop)
        except Exception as exc:
            log.exception("agent %s stopped", loop.agent.name)
            failures.append(f"{loop.agent.name}: {type(exc).__name__}: {exc}")
            stop.set()

    threads = [threading.Thread(target=run, args=(loop,), name=f"agent-{loop.agent.name}") for loop in loops]
    for t in threads:
        t.start()
    log.info("worker %s: agents %s on %s (group %s)", consumer_name(settings), ", ".join(names),
             settings.kafka_bootstrap, settings.consumer_group)
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        redis_client.close()
    for f in failures:
        log.error("worker failed: %s", f)
    return 1 if failures else 0


def run_worker(settings: Settings, agents: Sequence[str] = AGENTS, loglevel: str = "info") -> int:
    """Run until SIGINT/SIGTERM. Start more (same consumer group) to scale out."""
    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    return run_agents(settings, agents, stop_on_signals(log, "finishing the batches in hand"))
