"""Raw Kafka records in and out of a PyFlink DataStream job, with their positions.

PyFlink's own Kafka (de)serializers are value-only (string, JSON, registry Avro). The job needs
the raw bytes plus the record's position, so it can decode with the project's codec
(``schemas/codec.py``) and dead-letter a bad record with topic/partition/offset. Two tiny Java
classes (``infra/flink/src/main/java/kuailv/flink``, built by ``python -m infra.flink_env``) do
only that; these functions plug them into PyFlink's KafkaSource/KafkaSink builders.

Source elements are ``Row(topic, partition, offset, timestamp, key, value)`` (``raw_record_type()``;
key and value are ``bytes`` or None). Sink elements are ``Row(topic, key, value)``
(``raw_output_type()``), so one sink writes both the projection topic and the dead-letter topic;
the producer partitions by key (murmur2, like every producer of the project).

Needs ``.venv-flink`` (imports pyflink) and the jars loaded first::

    env.add_jars(*infra.flink_env.jar_urls())
    ds = env.from_source(raw_kafka_source(bootstrap, [topic], group_id),
                         WatermarkStrategy.no_watermarks(), "kafka", type_info=raw_record_type())
    out.sink_to(raw_kafka_sink(bootstrap))          # out: output_type=raw_output_type()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyflink.common import Types
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSink,
    KafkaSinkBuilder,
    KafkaSource,
    KafkaSourceBuilder,
)
from pyflink.java_gateway import get_gateway


def raw_record_type():
    """Type of the source's elements: ``Row(topic, partition, offset, timestamp, key, value)``
    (must match RawKafkaRecordDeserializationSchema.rowType())."""
    return Types.ROW_NAMED(
        ["topic", "partition", "offset", "timestamp", "key", "value"],
        [Types.STRING(), Types.INT(), Types.LONG(), Types.LONG(), _bytes(), _bytes()],
    )


def raw_output_type():
    """Type the stream must have before ``raw_kafka_sink``: ``Row(topic, key, value)``
    (RawKafkaRecordSerializationSchema.rowType())."""
    return Types.ROW_NAMED(["topic", "key", "value"], [Types.STRING(), _bytes(), _bytes()])


# Functions, not module constants: a TypeInformation caches its Java twin once used, and a cached
# py4j object inside a type that a Python function captures (an OutputTag) cannot be pickled.
def _bytes():
    return Types.PRIMITIVE_ARRAY(Types.BYTE())


_JAVA_PACKAGE = "kuailv.flink"  # infra/flink/src/main/java/kuailv/flink


def batch_type():
    """``Row(partition_key, batch)``: what RecordBatcher emits (RecordBatcher.rowType())."""
    return Types.ROW_NAMED(["partition_key", "batch"], [Types.STRING(), _bytes()])


def java_class(name: str, *args: object):
    """A new instance of ``kuailv.flink.<name>(*args)`` from the jars added with ``env.add_jars``."""
    target = getattr(get_gateway().jvm.kuailv.flink, name)
    try:
        return target(*args)
    except TypeError as exc:  # py4j: "'JavaPackage' object is not callable" = class not on the classpath
        raise RuntimeError(
            f"{_JAVA_PACKAGE}.{name} not found: call env.add_jars(*infra.flink_env.jar_urls()) "
            "before building the source/sink (and run scripts/setup_flink.sh once)"
        ) from exc


def raw_kafka_source(
    bootstrap_servers: str,
    topics: Iterable[str],
    group_id: str,
    *,
    starting_offsets: KafkaOffsetsInitializer | None = None,
    bounded: bool = False,
    properties: Mapping[str, str] | None = None,
) -> KafkaSource:
    """A KafkaSource of ``raw_record_type()`` rows. ``starting_offsets`` applies when there is no
    checkpoint/savepoint (default: the group's committed offsets, else earliest). ``bounded=True``
    stops at the offsets that are latest when the job starts (tests, replays)."""
    builder = KafkaSourceBuilder()
    builder.set_bootstrap_servers(bootstrap_servers).set_topics(*topics).set_group_id(group_id)
    if starting_offsets is None:
        starting_offsets = KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    builder.set_starting_offsets(starting_offsets)
    if bounded:
        builder.set_bounded(KafkaOffsetsInitializer.latest())
    for key, value in (properties or {}).items():
        builder.set_property(key, value)
    builder._j_builder.setDeserializer(java_class("RawKafkaRecordDeserializationSchema"))
    return builder.build()


def raw_kafka_sink(
    bootstrap_servers: str,
    *,
    delivery_guarantee: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE,
    transactional_id_prefix: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> KafkaSink:
    """A KafkaSink for ``raw_output_type()`` rows; the topic comes from each row. AT_LEAST_ONCE flushes on
    every checkpoint; EXACTLY_ONCE needs ``transactional_id_prefix`` and commits on checkpoints."""
    builder = KafkaSinkBuilder()
    builder.set_bootstrap_servers(bootstrap_servers).set_delivery_guarantee(delivery_guarantee)
    if transactional_id_prefix is not None:
        builder.set_transactional_id_prefix(transactional_id_prefix)
    for key, value in (properties or {}).items():
        builder.set_property(key, value)
    # Not KafkaSinkBuilder.set_record_serializer: that one expects PyFlink's own builder's schema.
    builder._j_builder.setRecordSerializer(java_class("RawKafkaRecordSerializationSchema"))
    return builder.build()
