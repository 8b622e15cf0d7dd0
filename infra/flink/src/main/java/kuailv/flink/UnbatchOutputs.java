package kuailv.flink;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Splits the Python operator's output batch into the sink's rows, {@code Row(topic, key, value)}
 * (RawKafkaRecordSerializationSchema). The batch is a sequence of, big-endian: {@code int16 topic
 * length, topic UTF-8, int32 key length (-1 = null), key, int32 value length (-1 = null), value};
 * {@code jobs/flink_batches.py} writes it.
 */
public final class UnbatchOutputs implements FlatMapFunction<byte[], Row>, ResultTypeQueryable<Row> {

    private static final long serialVersionUID = 1L;

    @Override
    public void flatMap(byte[] batch, Collector<Row> out) {
        ByteBuffer b = ByteBuffer.wrap(batch);
        while (b.hasRemaining()) {
            byte[] topic = new byte[b.getShort()];
            b.get(topic);
            byte[] key = read(b);
            byte[] value = read(b);
            out.collect(Row.of(new String(topic, StandardCharsets.UTF_8), key, value));
        }
    }

    private static byte[] read(ByteBuffer b) {
        int n = b.getInt();
        if (n < 0) {
            return null;
        }
        byte[] out = new byte[n];
        b.get(out);
        return out;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return RawKafkaRecordSerializationSchema.rowType();
    }
}
