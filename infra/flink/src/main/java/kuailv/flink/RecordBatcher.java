package kuailv.flink;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Groups raw Kafka records (RawKafkaRecordDeserializationSchema rows) into one batch per Kafka
 * partition, so the Python operator after it is called once per batch instead of once per record:
 * the hot-path pattern of the worker (batch in, pure step, batch out) inside Flink.
 *
 * <p>Emits {@code Row(partition_key STRING, batch BYTES)}: the key is {@code "topic[partition]"} (all
 * of an order's events are in one partition, so keying batches by it keeps every order on one
 * subtask), or, with {@code byPartitionNumber}, {@code "[partition]"}: co-partitioned input topics
 * (GPS and van orders, both keyed by driver) then meet under one key, so one keyed state holds a
 * driver's pings and orders. Batches stay per topic and partition either way. The batch is, big-endian: {@code int32 partition, int16 topic length, topic UTF-8}, then
 * per record {@code int64 offset, int64 timestamp, int32 key length (-1 = null), key, int32 value
 * length (-1 = null), value}. {@code jobs/flink_batches.py} reads it.
 *
 * <p>A partition's batch is emitted when it holds {@code maxRecords}, when {@code maxDelayMs} passed
 * since the first buffered record (processing time), before a checkpoint barrier (so no record is
 * ever only in this operator's memory when a checkpoint completes: the operator has no state), before
 * a watermark is forwarded (records stay ahead of the watermark that covers them), and at end of input.
 * The batch's timestamp is the largest record timestamp in it.
 */
public final class RecordBatcher extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {

    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxDelayMs;
    private final boolean byPartitionNumber;
    private transient Map<String, Batch> batches;
    private transient boolean timerSet;

    public RecordBatcher(int maxRecords, long maxDelayMs) {
        this(maxRecords, maxDelayMs, false);
    }

    public RecordBatcher(int maxRecords, long maxDelayMs, boolean byPartitionNumber) {
        if (maxRecords < 1 || maxDelayMs < 1) {
            throw new IllegalArgumentException("RecordBatcher: maxRecords and maxDelayMs must be >= 1");
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        this.byPartitionNumber = byPartitionNumber;
    }

    public static TypeInformation<Row> rowType() {
        return Types.ROW_NAMED(new String[] {"partition_key", "batch"}, Types.STRING,
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }

    @Override
    public void open() throws Exception {
        super.open();
        batches = new LinkedHashMap<>();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row r = element.getValue();
        String topic = (String) r.getField(0);
        int partition = (Integer) r.getField(1);
        String key = topic + "[" + partition + "]";
        Batch b = batches.get(key);
        if (b == null) {
            b = new Batch(topic, partition);
            batches.put(key, b);
        }
        b.add((Long) r.getField(2), (Long) r.getField(3), (byte[]) r.getField(4), (byte[]) r.getField(5));
        if (b.count >= maxRecords) {
            emit(key, b);
            batches.remove(key);
        } else if (!timerSet) {
            timerSet = true;
            getProcessingTimeService().registerTimer(
                    getProcessingTimeService().getCurrentProcessingTime() + maxDelayMs, this);
        }
    }

    @Override
    public void onProcessingTime(long time) throws Exception {
        timerSet = false;
        flushAll();
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flushAll();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flushAll();
    }

    @Override
    public void finish() throws Exception {
        flushAll();
        super.finish();
    }

    private void flushAll() throws IOException {
        if (batches.isEmpty()) {
            return;
        }
        for (Map.Entry<String, Batch> e : new ArrayList<>(batches.entrySet())) {
            emit(e.getKey(), e.getValue());
        }
        batches.clear();
    }

    private void emit(String key, Batch b) throws IOException {
        String outKey = byPartitionNumber ? "[" + b.partition + "]" : key;
        output.collect(new StreamRecord<>(Row.of(outKey, b.bytes()), b.maxTimestamp));
    }

    private static final class Batch {
        final ByteArrayOutputStream buf = new ByteArrayOutputStream(64 * 1024);
        final DataOutputStream out = new DataOutputStream(buf);
        final int partition;
        int count;
        long maxTimestamp = Long.MIN_VALUE;

        Batch(String topic, int partition) throws IOException {
            this.partition = partition;
            byte[] t = topic.getBytes(StandardCharsets.UTF_8);
            out.writeInt(partition);
            out.writeShort(t.length);
            out.write(t);
        }

        void add(long offset, long timestamp, byte[] key, byte[] value) throws IOException {
            out.writeLong(offset);
            out.writeLong(timestamp);
            writeBytes(key);
            writeBytes(value);
            count++;
            maxTimestamp = Math.max(maxTimestamp, timestamp);
        }

        private void writeBytes(byte[] b) throws IOException {
            if (b == null) {
                out.writeInt(-1);
            } else {
                out.writeInt(b.length);
                out.write(b);
            }
        }

        byte[] bytes() {
            return buf.toByteArray();
        }
    }
}
