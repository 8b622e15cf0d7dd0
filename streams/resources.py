"""Clients and projectors a worker needs, created lazily inside the running
event loop (never at import) and closed on shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter
from streams.batch_stats import BatchStats
from streams.order_projector import OrderProjector
from streams.sinks.errors import SinkError
from streams.sinks.influx import InfluxWriter
from streams.sinks.kafka_output import KafkaOutput, make_producer
from streams.sinks.redis_orders import RedisOrderStore
from streams.sinks.redis_positions import RedisDriverPositions
from streams.source import SourceRecord
from streams.telemetry_projector import TelemetryProjector

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def make_codec(settings: Settings) -> AvroCodec:
    if settings.schema_registry_url:
        from streams.schema_registry import RegistryCatalog

        return AvroCodec(RegistryCatalog.connect(settings.schema_registry_url))
    return AvroCodec()


def infra_errors() -> tuple[type[BaseException], ...]:
    from confluent_kafka import KafkaException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (SinkError, KafkaException, RedisConnectionError, RedisTimeoutError, OSError)


class WorkerResources:
    def __init__(self, settings: Settings, consumer: str | None = None) -> None:
        self.settings = settings
        self.consumer = consumer or f"{settings.consumer_group}@{socket.gethostname()}"
        self._redis: Any = None
        self._http: Any = None
        self._orders: OrderProjector | None = None
        self._telemetry: TelemetryProjector | None = None
        self.codec = make_codec(settings)

    @property
    def redis(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.settings.redis_url, decode_responses=False)
        return self._redis

    def order_projector(self) -> OrderProjector:
        if self._orders is None:
            output = KafkaOutput(make_producer(self.settings.kafka_bootstrap, f"{self.consumer}/orders"))
            store = RedisOrderStore(self.redis, self.settings.redis_prefix)
            self._orders = OrderProjector(self.codec, store, output, consumer=self.consumer,
                                          wall_clock_ms=wall_clock_ms)
        return self._orders

    def telemetry_projector(self) -> TelemetryProjector:
        if self._telemetry is None:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            influx = InfluxWriter(self.settings.influx_url, self.settings.influx_db, self._http)
            positions = RedisDriverPositions(self.redis, self.settings.redis_prefix)
            output = KafkaOutput(make_producer(self.settings.kafka_bootstrap, f"{self.consumer}/telemetry"))
            self._telemetry = TelemetryProjector(self.codec, influx, positions, output, consumer=self.consumer,
                                                 wall_clock_ms=wall_clock_ms)
        return self._telemetry

    async def record_stats(self, name: str, stats: BatchStats) -> None:
        pipe = self.redis.pipeline(transaction=False)
        key = f"{self.settings.redis_prefix}:stats:{name}"
        for field, value in stats.as_dict().items():
            if value:
                pipe.hincrby(key, field, value)
        await pipe.execute()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()


async def run_batch(name: str, process: Callable[[Sequence[SourceRecord]], Awaitable[BatchStats]],
                    batch: Sequence[SourceRecord], resources: WorkerResources,
                    park: Callable[[Sequence[DeadLetter]], Awaitable[None]]) -> BatchStats:
    """Process a batch until it succeeds. Infrastructure errors are retried with
    backoff (the batch is not acked meanwhile); any other exception is a bug in
    our code: the batch is parked in the dead-letter topic so the partition moves on."""
    delay = 0.5
    retryable = infra_errors()
    first, last = batch[0].position, batch[-1].position
    while True:
        try:
            stats = await process(batch)
            await resources.record_stats(name, stats)
            return stats
        except retryable as exc:
            log.error("%s batch %s..%s: %s: %s; retrying in %.1fs", name, first, last, type(exc).__name__, exc,
                      delay)
        except Exception as exc:
            log.exception("%s batch %s..%s failed; parking %d records in the dead-letter topic", name, first, last,
                          len(batch))
            reason = f"{type(exc).__name__}: {exc}"
            try:
                await park([DeadLetter(r, "PROCESSING_ERROR", reason) for r in batch])
                stats = BatchStats(records=len(batch), dead_letters=len(batch))
                await resources.record_stats(name, stats)
                return stats
            except retryable as park_exc:
                log.error("parking failed: %s; retrying", park_exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
