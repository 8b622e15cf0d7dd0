package kuailv.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
// The connector's uber jar (flink-sql-connector-kafka) relocates kafka-clients; we compile against it.
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.types.Row;

/**
 * Writes what the Python job already encoded: each element is
 * {@code Row(topic STRING, key BYTES, value BYTES)}, so one sink serves the projection topic and
 * the dead-letter topic. The partition is left to the producer's default partitioner (murmur2 of
 * the key, like every other producer of the project); the record timestamp is the element's
 * (event-time) timestamp when it has one. A null value writes a tombstone.
 */
public final class RawKafkaRecordSerializationSchema implements KafkaRecordSerializationSchema<Row> {

    private static final long serialVersionUID = 1L;

    public static final String[] FIELD_NAMES = {"topic", "key", "value"};

    /** The type the Python stream must have before the sink: Types.ROW_NAMED(FIELD_NAMES, [STRING, BYTES, BYTES]). */
    public static TypeInformation<Row> rowType() {
        return Types.ROW_NAMED(
                FIELD_NAMES, Types.STRING, Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE));
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Row element, KafkaSinkContext context, Long timestamp) {
        String topic = (String) element.getField(0);
        if (topic == null || topic.isEmpty()) {
            throw new IllegalArgumentException("RawKafkaRecordSerializationSchema: element without a topic: " + element);
        }
        byte[] key = (byte[]) element.getField(1);
        byte[] value = (byte[]) element.getField(2);
        Long ts = timestamp != null && timestamp >= 0 ? timestamp : null;
        return new ProducerRecord<>(topic, null, ts, key, value);
    }
}
