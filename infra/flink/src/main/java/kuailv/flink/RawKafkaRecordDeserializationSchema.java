package kuailv.flink;

import java.io.IOException;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
// The connector's uber jar (flink-sql-connector-kafka) relocates kafka-clients; we compile against it.
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Hands every Kafka record to PyFlink untouched, with its position, so the Python job decodes it
 * with the project's own codec (schemas/codec.py) and can dead-letter it with topic/partition/offset.
 *
 * <p>Emits {@code Row(topic STRING, partition INT, offset BIGINT, timestamp BIGINT, key BYTES, value BYTES)}
 * (key and value may be null: a tombstone or a record without key). Never throws on content.
 */
public final class RawKafkaRecordDeserializationSchema implements KafkaRecordDeserializationSchema<Row> {

    private static final long serialVersionUID = 1L;

    public static final String[] FIELD_NAMES = {"topic", "partition", "offset", "timestamp", "key", "value"};

    /** The produced type; PyFlink sees it as Types.ROW_NAMED(FIELD_NAMES, [STRING, INT, LONG, LONG, BYTES, BYTES]). */
    public static TypeInformation<Row> rowType() {
        return Types.ROW_NAMED(
                FIELD_NAMES,
                Types.STRING,
                Types.INT,
                Types.LONG,
                Types.LONG,
                Types.PRIMITIVE_ARRAY(Types.BYTE),
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) throws IOException {
        out.collect(Row.of(
                record.topic(),
                record.partition(),
                record.offset(),
                record.timestamp(),
                record.key(),
                record.value()));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return rowType();
    }
}
