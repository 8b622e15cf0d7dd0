"""What every PyFlink job of the project wires the same way: options, environment, source, batches.

* ``add_run_args``: the options of a run (profile, bootstrap, bounded, execution mode, parallelism,
  checkpoints, watermarks, batching, restarts);
* ``environment``: the ``StreamExecutionEnvironment`` for those options (a local run gets this
  checkout's Python and file checkpoints; jars loaded);
* ``raw_source``: the Kafka topics as raw-record rows from the earliest offsets, event time = the
  record timestamp, watermarks generated in the source (Java);
* ``batched_by_partition`` / ``unbatched``: the Java batching around the one Python operator.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.datastream import DataStream, KeyedStream, RuntimeExecutionMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer
from pyflink.java_gateway import get_gateway


def add_run_args(p: argparse.ArgumentParser, *, out_of_orderness_help: str | None = None) -> None:
    p.add_argument("--profile", default=None, help="settings profile (dev/test)")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: from settings)")
    p.add_argument("--bounded", action="store_true", help="stop at the inputs' end offsets as of start-up")
    p.add_argument("--mode", choices=["process", "thread"], default=None,
                   help="python.execution-mode for a local run (cluster runs take it from config.yaml)")
    p.add_argument("--local", action="store_true", help="embedded mini-cluster: set this checkout's Python paths")
    p.add_argument("--parallelism", type=int, default=None)
    p.add_argument("--checkpoint-ms", type=int, default=10_000)
    p.add_argument("--out-of-orderness-s", type=int, default=30, help=out_of_orderness_help)
    p.add_argument("--idleness-s", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=500, help="records per partition batch (Python call)")
    p.add_argument("--batch-ms", type=int, default=50, help="longest a record waits in a batch (latency bound)")
    p.add_argument("--no-restart", action="store_true", help="fail instead of restarting (tests)")


def environment(args: argparse.Namespace, settings: Any) -> StreamExecutionEnvironment:
    from infra import flink_env

    conf = Configuration()
    if args.local or args.mode:
        for key, value in flink_env.python_settings(args.mode or "thread").items():
            conf.set_string(key, value)
        # The JobManager's in-memory checkpoint storage refuses snapshots over 5 MB (a few thousand
        # orders in one subtask); checkpoint a local run to files, like the cluster does.
        conf.set_string("execution.checkpointing.storage", "filesystem")
        conf.set_string("execution.checkpointing.dir", f"file://{settings.stack_dir / 'flink-local' / 'checkpoints'}")
    if args.no_restart:
        conf.set_string("restart-strategy.type", "none")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.add_jars(*flink_env.jar_urls())
    env.enable_checkpointing(args.checkpoint_ms)
    if args.parallelism:
        env.set_parallelism(args.parallelism)
    if args.bounded:
        env.set_runtime_mode(RuntimeExecutionMode.STREAMING)  # bounded source, streaming semantics
    return env


def raw_source(env: StreamExecutionEnvironment, args: argparse.Namespace, bootstrap: str, topics: list[str],
               group: str, uid: str) -> DataStream:
    """Always from the earliest offsets: the state lives only in Flink, so a run that does not restore a
    checkpoint/savepoint rebuilds it from the whole log (a restore continues from the checkpointed offsets;
    committed group offsets would skip history). Event time = the Kafka record timestamp (our producers set
    it to the event's time); the watermark is generated in the source, in Java."""
    from infra.flink_kafka import raw_kafka_source, raw_record_type

    source = raw_kafka_source(bootstrap, topics, group, bounded=args.bounded,
                              starting_offsets=KafkaOffsetsInitializer.earliest())
    watermarks = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(args.out_of_orderness_s))
                  .with_idleness(Duration.of_seconds(args.idleness_s)))
    return env.from_source(source, watermarks, f"kafka {' + '.join(topics)}", type_info=raw_record_type()).uid(uid)


def batched_by_partition(raw: DataStream, batch_size: int, batch_ms: int, *,
                         by_partition_number: bool = False) -> KeyedStream:
    """``raw`` (raw-record rows) as per-partition batches, keyed by topic and partition (or by the partition
    number alone, for co-partitioned inputs that must meet under one key), entirely in Java."""
    from infra.flink_kafka import batch_type, java_class

    gateway = get_gateway()
    batches = raw._j_data_stream.transform("batch records per partition", batch_type().get_java_type_info(),
                                           java_class("RecordBatcher", batch_size, batch_ms, by_partition_number))
    batches.uid("batch-records")
    j_keyed = batches.keyBy(gateway.jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, Types.PRIMITIVE_ARRAY(Types.BYTE()), raw)


def unbatched(out_batches: DataStream) -> DataStream:
    """The Python operator's output batches as ``Row(topic, key, value)`` for the topic-routing sink (Java)."""
    from infra.flink_kafka import java_class

    rows = out_batches._j_data_stream.flatMap(java_class("UnbatchOutputs"))
    rows.uid("unbatch-outputs").name("unbatch outputs")
    return DataStream(rows)
