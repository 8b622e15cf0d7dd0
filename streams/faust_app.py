"""The Faust worker: two agents around the engine-agnostic projectors.

* ``order-state`` consumes ``kuailv.order-events.v1`` in batches, folds each
  order's events (``projections.order_state.fold``) and writes Redis and the
  compacted ``kuailv.order-state.v1`` topic.
* ``telemetry`` consumes GPS and sensor topics into InfluxDB and driver
  positions in Redis.

At-least-once: ``take_events`` acks a batch only after its body returns, and
the body only returns once every output is written (see ``run_batch``).
Topics are created by ``infra`` with explicit partition counts; the app never
declares them (auto-created topics break co-partitioning).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

import faust

from config.settings import Settings
from schemas.dead_letters import DeadLetter
from schemas.topics import GPS, ORDER_EVENTS, SENSORS
from streams.resources import WorkerResources, run_batch, wall_clock_ms
from streams.source import from_faust

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> tuple[faust.App, WorkerResources]:
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        processing_guarantee="at_least_once",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
    )
    resources = WorkerResources(settings)
    order_topic = app.topic(ORDER_EVENTS.name, key_serializer="raw", value_serializer="raw")
    telemetry_topic = app.topic(GPS.name, SENSORS.name, key_serializer="raw", value_serializer="raw")

    async def park(dead: Sequence[DeadLetter], output: Any) -> None:
        now = wall_clock_ms()
        for d in dead:
            output.add(*d.encode(resources.codec, resources.consumer, now))
        await asyncio.to_thread(output.flush)

    @app.agent(order_topic, name="order-state")
    async def order_state(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_seconds):
            projector = resources.order_projector()
            batch = [from_faust(e) for e in events]
            await run_batch("orders", projector.process, batch, resources,
                            functools.partial(park, output=projector.output))

    @app.agent(telemetry_topic, name="telemetry")
    async def telemetry(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker_batch_size * 4, within=settings.worker_batch_seconds):
            projector = resources.telemetry_projector()
            batch = [from_faust(e) for e in events]
            await run_batch("telemetry", projector.process, batch, resources,
                            functools.partial(park, output=projector.output))

    @app.on_before_shutdown.connect  # type: ignore[misc]
    async def _close(app: faust.App, **kwargs: Any) -> None:
        await resources.close()

    return app, resources


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run a worker until SIGINT/SIGTERM. Start more (same consumer group) to scale out."""
    app, _ = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
