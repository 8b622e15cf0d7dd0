"""PyFlink DataStream job: order events -> order-state projection + dead letters.

    .venv-flink/bin/python -m jobs.order_state_job [--profile dev] [--bounded] [--mode thread]

Same decisions as the Faust worker (``jobs.order_state_logic`` over
``projections.order_step``); the operators only move data:

    Kafka raw records (topic, partition, offset, timestamp, key, value)
      -> DecodeOrderRecords   (bad records -> side output: dead letters)
      -> event-time watermarks (bounded out-of-orderness, idleness)
      -> key_by(order id) -> FoldOrderState (keyed ValueState = the fold state)
      -> Row(topic, key, value) -> topic-routing Kafka sink
         (kuailv.order-state.v1, compacted; kuailv.dead-letters.v1)

Delivery: at-least-once with idempotent output by default. On restore from a
checkpoint the job re-reads from the checkpointed offsets with the checkpointed
fold state, so re-emitted records are byte-identical projections of the same
versions; the compacted topic keeps the latest per order and consumers already
tolerate the Faust worker's at-least-once duplicates. ``--delivery
exactly-once`` switches to Kafka transactions (consumers must read_committed;
records appear only at checkpoints).

``build`` takes the source stream and returns the output stream, so tests run
it on a collection and ``main`` picks the Kafka connectors.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from pyflink.common import Configuration, Duration, Row, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeExecutionMode,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer
from pyflink.datastream.state import ValueStateDescriptor

from jobs.order_state_logic import KeyedEvent, decode_row, fold_event, source_record
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, ORDER_EVENTS, ORDER_STATE

log = logging.getLogger(__name__)
CONSUMER = "flink:order-state"


def _now_ms() -> int:
    return int(time.time() * 1000)  # only for DeadLetter.failed_at; decisions use event time


def _output_type() -> Any:
    from infra.flink_kafka import raw_output_type

    return raw_output_type()


class DecodeOrderRecords(ProcessFunction):
    def __init__(self, dead_letters: OutputTag, consumer: str) -> None:
        self.dead_letters = dead_letters
        self.consumer = consumer
        self.codec: AvroCodec | None = None

    def open(self, runtime_context: Any) -> None:
        self.codec = AvroCodec()

    def process_element(self, row: Row, ctx: ProcessFunction.Context) -> Any:
        assert self.codec is not None
        rec = source_record(row[0], row[1], row[2], row[3], row[4], row[5])
        out = decode_row(self.codec, rec, self.consumer, _now_ms())
        if isinstance(out, KeyedEvent):
            yield out
        else:
            yield self.dead_letters, Row(*out)


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value: KeyedEvent, record_timestamp: int) -> int:
        return value.event_time_ms


class FoldOrderState(KeyedProcessFunction):
    """Keyed by order id; the ValueState holds ``projections.order_state`` fold state."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.codec: AvroCodec | None = None
        self.state: Any = None

    def open(self, runtime_context: Any) -> None:
        self.codec = AvroCodec()
        self.state = runtime_context.get_state(ValueStateDescriptor("order-fold-state", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, event: KeyedEvent, ctx: KeyedProcessFunction.Context) -> Any:
        assert self.codec is not None
        new_state, outputs = fold_event(self.codec, self.state.value(), event, self.consumer, _now_ms())
        if new_state is not None:
            self.state.update(new_state)
        for topic, key, value in outputs:
            yield Row(topic, key, value)


class RenameTopics:
    """Route outputs to other topic names (tests, side-by-side runs)."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = routes

    def __call__(self, row: Row) -> Row:
        return Row(self.routes.get(row[0], row[0]), row[1], row[2])


def build(raw: DataStream, *, consumer: str = CONSUMER, out_of_orderness_s: int = 30,
          idleness_s: int = 60, routes: dict[str, str] | None = None) -> DataStream:
    """The job's topology from a stream of raw Kafka rows to ``Row(topic, key, value)``."""
    dead_letters = OutputTag("dead-letters", _output_type())
    decoded = raw.process(DecodeOrderRecords(dead_letters, consumer), output_type=Types.PICKLED_BYTE_ARRAY()) \
        .uid("decode-order-records").name("decode order records")
    watermarks = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(out_of_orderness_s))
                  .with_timestamp_assigner(EventTime())
                  .with_idleness(Duration.of_seconds(idleness_s)))
    folded = (decoded.assign_timestamps_and_watermarks(watermarks).uid("event-time").name("event time")
              .key_by(lambda e: e.order_id, key_type=Types.STRING())
              .process(FoldOrderState(consumer), output_type=_output_type())
              .uid("fold-order-state").name("fold order state"))
    out = folded.union(decoded.get_side_output(dead_letters))
    if routes:
        out = out.map(RenameTopics(routes), output_type=_output_type()).uid("route-topics").name("route topics")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jobs.order_state_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=None, help="settings profile for Kafka (dev/test)")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: from settings)")
    p.add_argument("--group", default="kuailv-flink-order-state", help="Kafka consumer group id")
    p.add_argument("--input-topic", default=ORDER_EVENTS.name)
    p.add_argument("--output-topic", default=ORDER_STATE.name)
    p.add_argument("--dead-letter-topic", default=DEAD_LETTERS.name)
    p.add_argument("--bounded", action="store_true", help="stop at the input's end offsets as of start-up")
    p.add_argument("--mode", choices=["process", "thread"], default=None,
                   help="python.execution-mode for a local run (cluster runs take it from config.yaml)")
    p.add_argument("--local", action="store_true", help="embedded mini-cluster: set this checkout's Python paths")
    p.add_argument("--parallelism", type=int, default=None)
    p.add_argument("--checkpoint-ms", type=int, default=10_000)
    p.add_argument("--out-of-orderness-s", type=int, default=30)
    p.add_argument("--delivery", choices=["at-least-once", "exactly-once"], default="at-least-once")
    p.add_argument("--no-restart", action="store_true", help="fail instead of restarting (tests)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from config import settings as settings_mod
    from infra import flink_env
    from infra.flink_kafka import raw_kafka_sink, raw_kafka_source, raw_record_type

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_mod.load(args.profile)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    conf = Configuration()
    if args.local or args.mode:
        for key, value in flink_env.python_settings(args.mode or "thread").items():
            conf.set_string(key, value)
    if args.no_restart:
        conf.set_string("restart-strategy.type", "none")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.add_jars(*flink_env.jar_urls())
    env.enable_checkpointing(args.checkpoint_ms)
    if args.parallelism:
        env.set_parallelism(args.parallelism)
    if args.bounded:
        env.set_runtime_mode(RuntimeExecutionMode.STREAMING)  # bounded source, streaming semantics
    # Always from the earliest offset: the fold state lives only in Flink state, so a run that does
    # not restore a checkpoint/savepoint must rebuild it from the whole log. (A restore ignores this
    # and continues from the checkpointed offsets.) Committed group offsets would skip history.
    source = raw_kafka_source(bootstrap, [args.input_topic], args.group, bounded=args.bounded,
                              starting_offsets=KafkaOffsetsInitializer.earliest())
    raw = env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka order events",
                          type_info=raw_record_type()).uid("kafka-order-events")
    routes = {ORDER_STATE.name: args.output_topic, DEAD_LETTERS.name: args.dead_letter_topic}
    routes = {k: v for k, v in routes.items() if k != v}
    out = build(raw, out_of_orderness_s=args.out_of_orderness_s, routes=routes or None)
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
