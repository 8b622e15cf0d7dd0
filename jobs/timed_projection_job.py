"""PyFlink DataStream job: the geofence, alert or fleet projection, with event-time timers.

    .venv-flink/bin/python -m jobs.timed_projection_job --projection geofences|alerts|fleet [--profile dev]
        [--bounded] [--local] [--mode thread]

The same decisions as the worker's ``geofences`` / ``alerts`` agents and ``kuailv replay
--projection``: the one Python operator runs ``projections.timed_batch.TimedBatches`` (the pure
fold and the timers it makes due) through ``jobs.timed_projection_logic``::

    KafkaSource of raw records (Java), both input topics:
        geofences: kuailv.gps.v1 + kuailv.van-orders.v1 (co-partitioned by driver)
        alerts:    kuailv.order-events.v1 + kuailv.sensors.v1
        fleet:     kuailv.fleet.v1 (one partition: driver statuses + re-dispatch requests)
        stock:     kuailv.stock.v1 (docs/stock.md)
        kpi-exposures: kuailv.alerts.v1; kpi-orders: kuailv.order-state.v1 + kuailv.kpi-exposures.v1
                   (co-partitioned by order); kpis: kuailv.kpi-contributions.v1 (docs/kpis.md)
      event time = the Kafka record timestamp (our producers set it to the event's time);
      watermarks (bounded out-of-orderness + idleness) generated in the source
      -> RecordBatcher (Java): one batch per topic-partition, keyed by the partition NUMBER,
         so partition p of both inputs meets under one key
      -> TimedProjection (Python KeyedProcessFunction): holds each topic-partition's records until
         Flink's watermark passes them and releases them merged by event time (jobs.event_time_merge,
         Flink event-time timers wake it); folds them, fires the projection's own timers;
         MapStates: states, timer index, watermarks, held records
      -> UnbatchOutputs (Java) -> topic-routing KafkaSink:
         geofences: kuailv.geofence-transitions.v1, kuailv.order-etas.v1, kuailv.alerts.v1 (notices,
                    gps-silent), kuailv.fleet.v1 (driver statuses), kuailv.dead-letters.v1
         alerts:    kuailv.alerts.v1, kuailv.dead-letters.v1
         fleet:     kuailv.redispatch-suggestions.v1, kuailv.dead-letters.v1
         stock:     kuailv.alerts.v1 (low-stock), kuailv.replenishment-suggestions.v1, kuailv.dead-letters.v1
         kpi-exposures / kpi-orders / kpis: kuailv.kpi-exposures.v1 / kuailv.kpi-contributions.v1 /
                    kuailv.kpis.v1, kuailv.dead-letters.v1

Two watermarks, two jobs: Flink's watermark decides when held input is complete enough to merge
(an operational bound, ``--out-of-orderness-s``); the projection's own per-partition watermark
(newest ping / order update minus ``KUAILV_GEOFENCE_LATENESS_MS`` / ``KUAILV_ALERT_LATENESS_MS``)
decides lateness and timers, identically in every engine. ``--out-of-orderness-s`` adds latency,
never changes a decision, except for input later than it, which is released in offset order
(the worker does the same with it).

Delivery: at-least-once; outputs are deterministic (ids from the inputs) and the alert topic is
compacted by alert id. The worker publishes Redis views and InfluxDB points besides; this job
publishes the topics only (a data engineer's backfill or replay at scale).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, KeyedProcessFunction
from pyflink.datastream.state import MapStateDescriptor

from jobs.flink_batches import read_batch, write_outputs
from jobs.flink_topology import add_run_args, batched_by_partition, environment, raw_source, unbatched
from jobs.order_state_logic import as_bytes

log = logging.getLogger(__name__)
PROJECTIONS = ("geofences", "alerts", "fleet", "kpi-exposures", "kpi-orders", "kpis", "stock")


def _now_ms() -> int:
    return int(time.time() * 1000)  # only for DeadLetter.failed_at; decisions use event time


def input_topics(projection: str) -> tuple[str, ...]:
    """The contract input topics, in merge-tie order (the order ``kuailv replay`` merges them)."""
    from schemas.topics import FLEET, ORDER_EVENTS, SENSORS
    from streams.projection_builders import GEOFENCE_TOPICS

    if projection.startswith("kpi"):  # the KPI stages (docs/kpis.md), as the worker's agents read them
        from projections.kpi_step import STAGES

        return STAGES[projection][1]
    if projection == "stock":
        from schemas.topics import STOCK

        return (STOCK.name,)
    return {"geofences": GEOFENCE_TOPICS, "alerts": (ORDER_EVENTS.name, SENSORS.name),
            "fleet": (FLEET.name,)}[projection]


def make_logic(projection: str, settings: Any, consumer: str, inputs: dict[str, str] | None = None) -> Any:
    """``TimedProjectionLogic`` for ``projection`` as configured by ``settings`` (the job's, in ``open``)."""
    from jobs.timed_projection_logic import TimedProjectionLogic
    from projections.timed_batch import TimedBatches, alert_timing, geofence_timing
    from schemas.codec import AvroCodec
    from streams.projection_builders import alert_projection, fleet_projection, geofence_projection

    codec = AvroCodec(epoch_ms=True)
    if projection == "geofences":
        p = geofence_projection(settings, codec)
        steps = TimedBatches(p, geofence_timing(p))
    elif projection == "fleet":
        steps = TimedBatches(fleet_projection(settings, codec), None)
    elif projection == "stock":
        from streams.projection_builders import stock_projection

        steps = TimedBatches(stock_projection(settings, codec), None)
    elif projection.startswith("kpi"):
        from projections.kpi_step import STAGES

        steps = TimedBatches(STAGES[projection][0](codec), None)
    else:
        p = alert_projection(settings, codec)
        steps = TimedBatches(p, alert_timing(p, settings.alert_lateness_ms))
    return TimedProjectionLogic(steps, codec, consumer, input_topics(projection), _now_ms, inputs=inputs)


class _MapStateStore:
    """``jobs.timed_projection_logic.KeyedStore`` over the operator's MapStates (current key's)."""

    def __init__(self, states: Any, timers: Any, marks: Any, pending: Any) -> None:
        self._states, self._timers, self._marks, self._pending = states, timers, marks, pending

    def get_state(self, key: str) -> bytes | None:
        raw = self._states.get(key)
        return None if raw is None else as_bytes(raw)

    def put_states(self, values: dict[str, bytes]) -> None:
        for key, value in values.items():  # (process mode's MapState.put_all takes pairs: see order_state_job)
            self._states.put(key, value)

    def timers(self) -> list[tuple[str, int]]:
        return [(k, int(v)) for k, v in self._timers.items()]

    def put_timers(self, dues: dict[str, int | None]) -> None:
        for key, due in dues.items():
            if due is None:
                if self._timers.contains(key):
                    self._timers.remove(key)
            else:
                self._timers.put(key, due)

    def marks(self) -> list[tuple[str, int]]:
        return [(k, int(v)) for k, v in self._marks.items()]

    def put_marks(self, marks: dict[str, int]) -> None:
        for key, mark in marks.items():
            self._marks.put(key, mark)

    def pending(self) -> list[tuple[str, bytes]]:
        return [(k, as_bytes(v)) for k, v in self._pending.items()]  # type: ignore[misc]

    def put_pending(self, values: dict[str, bytes | None]) -> None:
        for key, value in values.items():
            if value is None:
                if self._pending.contains(key):
                    self._pending.remove(key)
            else:
                self._pending.put(key, value)


class TimedProjection(KeyedProcessFunction):
    """Keyed by partition number (``"[p]"``); see the module docstring."""

    def __init__(self, projection: str, settings: Any, consumer: str, inputs: dict[str, str],
                 routes: dict[str, str]) -> None:
        self.projection = projection
        self.settings = settings
        self.consumer = consumer
        self.inputs = inputs
        self.routes = routes
        self.logic: Any = None
        self.store: _MapStateStore | None = None

    def open(self, runtime_context: Any) -> None:
        self.logic = make_logic(self.projection, self.settings, self.consumer, self.inputs)

        def state(name: str, value_type: Any) -> Any:
            return runtime_context.get_map_state(MapStateDescriptor(name, Types.STRING(), value_type))

        self.store = _MapStateStore(state("states", Types.PICKLED_BYTE_ARRAY()), state("timers", Types.LONG()),
                                    state("marks", Types.LONG()), state("pending", Types.PICKLED_BYTE_ARRAY()))

    def close(self) -> None:
        if self.logic is not None:
            self.logic.clear()

    def process_element(self, batch: Any, ctx: KeyedProcessFunction.Context) -> Any:
        pkey = _key(ctx.get_current_key())
        service = ctx.timer_service()
        outputs = self.logic.add(pkey, read_batch(as_bytes(batch)), self.store, service.current_watermark())
        yield from self._emit(pkey, outputs, service)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Any:
        pkey = _key(ctx.get_current_key())
        service = ctx.timer_service()
        outputs = self.logic.release(pkey, self.store, max(timestamp, service.current_watermark()))
        yield from self._emit(pkey, outputs, service)

    def _emit(self, pkey: str, outputs: list[tuple[str, bytes, bytes]], service: Any) -> Any:
        due = self.logic.next_due(pkey)
        if due is not None:
            service.register_event_time_timer(due)  # same time twice is one timer (Flink dedups per key)
        if outputs:
            routes = self.routes
            yield write_outputs((routes.get(t, t), k, v) for t, k, v in outputs)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key[0])


def build(raw: DataStream, projection: str, settings: Any, *, consumer: str, inputs: dict[str, str] | None = None,
          routes: dict[str, str] | None = None, batch_size: int = 500, batch_ms: int = 50) -> DataStream:
    """The job's topology from a stream of raw Kafka rows to ``Row(topic, key, value)``."""
    out_batches = (batched_by_partition(raw, batch_size, batch_ms, by_partition_number=True)
                   .process(TimedProjection(projection, settings, consumer, inputs or {}, routes or {}),
                            output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
                   .uid(f"fold-{projection}").name(f"fold {projection} (event-time merge + timers)"))
    return unbatched(out_batches)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jobs.timed_projection_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--projection", choices=PROJECTIONS, required=True)
    add_run_args(p, out_of_orderness_help="how long input is held for the event-time merge (latency, not decisions)")
    p.add_argument("--group", default=None, help="Kafka consumer group id (default kuailv-flink-<projection>)")
    p.add_argument("--rename", action="append", default=[], metavar="CONTRACT=ACTUAL",
                   help="read/write ACTUAL instead of the contract topic CONTRACT (side topics); repeatable")
    return p.parse_args(argv)


def renames(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        contract, sep, actual = pair.partition("=")
        if not sep or not contract or not actual:
            raise SystemExit(f"--rename {pair!r}: expected CONTRACT=ACTUAL")
        out[contract] = actual
    return out


def main(argv: list[str] | None = None) -> None:
    from config import settings as settings_mod
    from infra.flink_kafka import raw_kafka_sink

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_mod.load(args.profile)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    group = args.group or f"kuailv-flink-{args.projection}"
    routes = renames(args.rename)
    topics = [routes.get(t, t) for t in input_topics(args.projection)]
    env = environment(args, settings)
    raw = raw_source(env, args, bootstrap, topics, group, f"kafka-{args.projection}-inputs")
    out = build(raw, args.projection, settings, consumer=f"flink:{args.projection}",
                inputs={actual: contract for contract, actual in routes.items()}, routes=routes,
                batch_size=args.batch_size, batch_ms=args.batch_ms)
    out.sink_to(raw_kafka_sink(bootstrap)).uid("kafka-sink").name(f"kafka {args.projection} outputs")
    log.info("%s job: %s %s -> topics (group %s)", args.projection, bootstrap, ", ".join(topics), group)
    env.execute(f"kuailv {args.projection} projection")


if __name__ == "__main__":
    main()
