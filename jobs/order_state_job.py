"""PyFlink DataStream job: order events -> order-state projection + dead letters.

    .venv-flink/bin/python -m jobs.order_state_job [--profile dev] [--bounded] [--mode thread]

Same decisions as the worker: the Python operator runs the worker's very step
(``projections.keyed_batch.fold_batch`` with ``OrderProjection``, via
``jobs.order_state_logic``) on batches; everything else is Java:

    KafkaSource of raw records (Java): Row(topic, partition, offset, timestamp, key, value);
        event time = the Kafka record timestamp, which our producers set to the event's time;
        watermarks (bounded out-of-orderness + idleness) generated in the source
      -> RecordBatcher (Java, chained to the source): one batch per Kafka partition, emitted at
         --batch-size records, after --batch-ms, before every checkpoint barrier and watermark
      -> keyBy(partition) (Java) -> FoldOrderBatches (Python KeyedProcessFunction, MapState of
         order id -> fold state): decode, fold, encode -> one output batch
      -> UnbatchOutputs (Java) -> topic-routing KafkaSink (Java): kuailv.order-state.v1
         (compacted), kuailv.van-orders.v1 (orders moving on/off vans, keyed by driver: the
         geofence job's input), kuailv.fleet.v1 (re-dispatch requests), kuailv.dead-letters.v1

The JVM/Python boundary is crossed twice per batch instead of up to six times per record
(the first version: decode, timestamp assigner, key selector and fold were separate Python
operators). Measured, and why: docs/flink.md, "Where the time goes".

Keyed by Kafka partition, not order id: an order's events all live in one partition (the
producers' contract), so the state is still per order (a MapState entry), and it rescales
by partition, like a Kafka Streams task; parallelism beyond the partition count idles.

Delivery: at-least-once with idempotent output by default. On restore from a
checkpoint the job re-reads from the checkpointed offsets with the checkpointed
fold state, so re-emitted records are byte-identical projections of the same
versions; the compacted topic keeps the latest per order and consumers already
tolerate the worker's at-least-once duplicates. ``--delivery exactly-once`` switches
to Kafka transactions (consumers must read_committed; records appear only at checkpoints).

``build`` takes the raw-record stream and returns the output stream, so tests run it
on a collection and ``main`` picks the Kafka connectors.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
)
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.state import MapStateDescriptor

from jobs.flink_batches import read_batch, write_outputs
from jobs.flink_topology import add_run_args, batched_by_partition, environment, raw_source, unbatched
from jobs.order_state_logic import OrderStateLogic, as_bytes
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, FLEET, ORDER_EVENTS, ORDER_STATE, VAN_ORDERS

log = logging.getLogger(__name__)
CONSUMER = "flink:order-state"


def _now_ms() -> int:
    return int(time.time() * 1000)  # only for DeadLetter.failed_at; decisions use event time


class FoldOrderBatches(KeyedProcessFunction):
    """Keyed by Kafka partition; a MapState holds each order's ``projections.order_state`` fold state."""

    def __init__(self, consumer: str, routes: dict[str, str] | None = None, cache_keys: int = 50_000) -> None:
        self.consumer = consumer
        self.routes = routes or {}
        self.cache_keys = cache_keys
        self.logic: OrderStateLogic | None = None
        self.orders: Any = None

    def open(self, runtime_context: Any) -> None:
        self.logic = OrderStateLogic(AvroCodec(epoch_ms=True), self.consumer, _now_ms, self.cache_keys)
        # Values are the state's JSON as bytes (pickling a bytes object is a copy).
        self.orders = runtime_context.get_map_state(
            MapStateDescriptor("order-fold-states", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))

    def close(self) -> None:
        if self.logic is not None:
            self.logic.clear()

    def _put_all(self, values: dict[str, bytes]) -> None:
        # Thread mode: one putAll call into Java. Process mode: PyFlink 2.2's MapState.put_all iterates
        # the dict's keys as if they were pairs (state_impl.py), so write each entry (into its write cache).
        if type(self.orders).__module__.startswith("pyflink.fn_execution.datastream.embedded"):
            self.orders.put_all(values)
        else:
            for key, value in values.items():
                self.orders.put(key, value)

    def process_element(self, batch: Any, ctx: KeyedProcessFunction.Context) -> Any:
        """``batch``: the RecordBatcher bytes of one partition (keyed operators get the value after the key)."""
        assert self.logic is not None
        outputs = self.logic.process_batch(read_batch(as_bytes(batch)), self.orders.get, self._put_all)
        if outputs:
            routes = self.routes
            yield write_outputs((routes.get(t, t), k, v) for t, k, v in outputs) if routes else write_outputs(outputs)


def build(raw: DataStream, *, consumer: str = CONSUMER, routes: dict[str, str] | None = None,
          batch_size: int = 500, batch_ms: int = 50, cache_keys: int = 50_000) -> DataStream:
    """The job's topology from a stream of raw Kafka rows to ``Row(topic, key, value)``."""
    out_batches = (batched_by_partition(raw, batch_size, batch_ms)
                   .process(FoldOrderBatches(consumer, routes, cache_keys),
                            output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
                   .uid("fold-order-state").name("fold order batches"))
    return unbatched(out_batches)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jobs.order_state_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--group", default="kuailv-flink-order-state", help="Kafka consumer group id")
    p.add_argument("--input-topic", default=ORDER_EVENTS.name)
    p.add_argument("--output-topic", default=ORDER_STATE.name)
    p.add_argument("--dead-letter-topic", default=DEAD_LETTERS.name)
    p.add_argument("--van-orders-topic", default=VAN_ORDERS.name,
                   help="where the orders moving on/off vans go (the geofence projection's input)")
    p.add_argument("--fleet-topic", default=FLEET.name,
                   help="where re-dispatch requests go (the fleet projection's input)")
    p.add_argument("--delivery", choices=["at-least-once", "exactly-once"], default="at-least-once")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from config import settings as settings_mod
    from infra.flink_kafka import raw_kafka_sink

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_mod.load(args.profile)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    env = environment(args, settings)
    raw = raw_source(env, args, bootstrap, [args.input_topic], args.group, "kafka-order-events")
    routes = {ORDER_STATE.name: args.output_topic, DEAD_LETTERS.name: args.dead_letter_topic,
              VAN_ORDERS.name: args.van_orders_topic, FLEET.name: args.fleet_topic}
    routes = {k: v for k, v in routes.items() if k != v}
    out = build(raw, routes=routes or None, batch_size=args.batch_size, batch_ms=args.batch_ms)
    if args.delivery == "exactly-once":
        # The sink's default transaction timeout (1 h) exceeds the broker's default maximum
        # (transaction.max.timeout.ms = 15 min): stay below it, above the checkpoint interval.
        sink = raw_kafka_sink(bootstrap, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                              transactional_id_prefix=f"{args.group}-tx",
                              properties={"transaction.timeout.ms": "600000"})
    else:
        sink = raw_kafka_sink(bootstrap)
    out.sink_to(sink).uid("kafka-sink").name("kafka order-state + dead letters")
    log.info("order-state job: %s %s -> %s, %s (%s)", bootstrap, args.input_topic, args.output_topic,
             args.dead_letter_topic, args.delivery)
    env.execute("kuailv order-state projection")


if __name__ == "__main__":
    main()
