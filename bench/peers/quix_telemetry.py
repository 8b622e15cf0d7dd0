"""The telemetry path as a user would write it with Quix Streams (the peer of ``bench.telemetry_path``).

GPS and van orders are two co-partitioned topics keyed by driver: Quix's ``concat`` merges them (aligned by
timestamp per partition) into one stream whose state store is keyed by driver. Per message, the same pure
code as the worker: decode and validate (``GeofenceProjection.decode``), the point against the fence index
(``FenceIndex.classify`` of one point: Quix hands over one message at a time), the driver fold
(``GeofenceProjection.fold``, the state in Quix's RocksDB store) with the same fence file, rules and learnt
model (``streams.projection_builders.geofence_projection`` from the same settings). Outputs:

* the GPS point and each published ETA estimate -> InfluxDB through Quix's ``InfluxDB1Sink``;
* each van's position and each order's ETA record -> Redis through Quix's ``RedisSink``;
* transitions, ETAs, notices and alerts, fleet statuses, dead letters -> the same Kafka topics as the worker
  (a ``BatchingSink`` of our own: Quix's ``to_topic`` writes one topic per branch and keys by the message).

It counts the input records it has flushed in the Redis counter ``$PEER_COUNTER``: every input also emits a
count item to a sink that adds its batch's size at each checkpoint (flushed with the others).
"""

from __future__ import annotations

import json
import os
from typing import Any

from quixstreams import Application, message_context
from quixstreams.sinks import BatchingSink, SinkBatch
from quixstreams.sinks.community.influxdb1 import InfluxDB1Sink
from quixstreams.sinks.community.redis import RedisSink

from config import settings as settings_mod
from projections.stage_times import ARRIVAL_ESTIMATOR
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import ALERTS, DEAD_LETTERS, FLEET, GEOFENCE_TRANSITIONS, GPS, ORDER_ETAS, VAN_ORDERS
from streams.projection_builders import geofence_projection

TOPICS: dict[str, str] = json.loads(os.environ["PEER_TOPICS"])  # contract name -> the bench's private topic
CANONICAL = {v: k for k, v in TOPICS.items()}
os.environ["KUAILV_FENCES"] = os.environ["PEER_FENCES"]
os.environ["KUAILV_ETA_MODEL"] = os.environ["PEER_ETA_MODEL"]
codec = AvroCodec(epoch_ms=True)  # the same decode as the worker's
projection = geofence_projection(settings_mod.load("test"), codec)
OUT = {"transition": (GEOFENCE_TRANSITIONS.name, "GeofenceTransition"), "eta": (ORDER_ETAS.name, "OrderEta"),
       "status": (FLEET.name, "DriverStatus"), "alert": (ALERTS.name, "Alert")}
GPS_FIELDS = ("lat", "lng", "speed_kmh", "heading_deg", "accuracy_m")
ETA_FIELDS = ("eta_ms", "remaining_s", "late_risk", "distance_m", "stops_before", "dispatch_count")
COUNT = {"_sink": "count"}


def process(value: bytes, key: str, timestamp: int, headers: Any, state: Any) -> list[dict[str, Any]]:
    ctx = message_context()
    rec = SourceRecord(CANONICAL[ctx.topic], ctx.partition, ctx.offset, key.encode(), value, timestamp)
    keyed = projection.decode(rec)
    if isinstance(keyed, DeadLetter):
        return [COUNT, {"_sink": "kafka", "topic": DEAD_LETTERS.name, "key": key,
                        "value": keyed.encode(codec, "quix", 0)[2]}]
    record_type, v, _ = keyed.event
    out: list[dict[str, Any]] = [COUNT]
    if record_type == "GpsPing":
        hits = projection.index.classify([v["lat"]], [v["lng"]])[0]
        item = (record_type, v, hits)
        out.append({"_sink": "influx", "m": "gps", "driver_id": v["driver_id"], "vehicle_id": v["vehicle_id"],
                    "t": v["event_time"], **{f: v[f] for f in GPS_FIELDS}})
        out.append({"_sink": "redis", "rkey": f"driver:{v['driver_id']}:position",
                    "doc": {"at": v["event_time"], "lat": v["lat"], "lng": v["lng"], "speed_kmh": v["speed_kmh"]}})
    else:
        item = keyed.event
    folded = projection.fold(key, state.get("geo"), [(rec, item)])
    if folded.state is not None and folded.changed:
        state.set("geo", folded.state)
    for kind, record in folded.outputs:
        topic, schema = OUT[kind]
        rkey = record["order_id"] if kind == "eta" else record.get("alert_id") or key
        out.append({"_sink": "kafka", "topic": topic, "key": rkey, "value": codec.encode(schema, record)})
        if kind == "eta":
            out.append({"_sink": "redis", "rkey": f"eta:{record['order_id']}", "doc": record})
            if record["estimator"] != ARRIVAL_ESTIMATOR:
                out.append({"_sink": "influx", "m": "order_eta", "order_id": record["order_id"],
                            "driver_id": record["driver_id"], "estimator": record["estimator"],
                            "t": record["computed_at"], "eta_ms": record["eta"],
                            "remaining_s": round((record["eta"] - record["computed_at"]) / 1000, 1),
                            "late_risk": record.get("late_risk"), "distance_m": record["distance_m"],
                            "stops_before": record["stops_before"], "dispatch_count": record["dispatch_count"]})
    for d in folded.dead_letters:
        out.append({"_sink": "kafka", "topic": DEAD_LETTERS.name, "key": key, "value": d.encode(codec, "quix", 0)[2]})
    return out


class KafkaRecords(BatchingSink):
    """The records of several output topics, produced and flushed at the checkpoint."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__()
        self._bootstrap = bootstrap
        self._producer: Any = None

    def setup(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": self._bootstrap, "acks": "all", "linger.ms": 5,
                                   "enable.idempotence": True, "compression.type": "lz4"})

    def write(self, batch: SinkBatch) -> None:
        for item in batch:
            v = item.value
            self._producer.produce(TOPICS[v["topic"]], v["value"], v["key"].encode())
        if self._producer.flush(30):
            raise RuntimeError("KafkaRecords: records not delivered in 30 s")


class InputCounter(BatchingSink):
    """How many inputs were flushed: INCRBY the batch's size (one count item per input record)."""

    def setup(self) -> None:
        import redis

        self._r = redis.Redis(port=int(os.environ["PEER_REDIS_PORT"]))

    def write(self, batch: SinkBatch) -> None:
        self._r.incrby(os.environ["PEER_COUNTER"], sum(1 for _ in batch))


def main() -> None:
    app = Application(broker_address=os.environ["PEER_BOOTSTRAP"], consumer_group=os.environ["PEER_GROUP"],
                      auto_offset_reset="earliest", state_dir=os.environ["PEER_STATE_DIR"],
                      loglevel=os.environ.get("PEER_LOGLEVEL", "WARNING"),
                      commit_interval=float(os.environ.get("PEER_COMMIT_INTERVAL", "1.0")))
    gps = app.dataframe(app.topic(TOPICS[GPS.name], key_deserializer="str", value_deserializer="bytes"))
    vans = app.dataframe(app.topic(TOPICS[VAN_ORDERS.name], key_deserializer="str", value_deserializer="bytes"))
    sdf = gps.concat(vans).apply(process, stateful=True, metadata=True, expand=True)
    prefix = os.environ["PEER_PREFIX"]
    sdf[sdf["_sink"] == "influx"].sink(InfluxDB1Sink(
        host="127.0.0.1", port=int(os.environ["PEER_INFLUX_PORT"]), database=os.environ["PEER_INFLUX_DB"],
        measurement=lambda v: v["m"], time_setter=lambda v: v["t"], time_precision="ms",
        tags_keys=lambda v: ("driver_id", "vehicle_id") if v["m"] == "gps" else ("order_id", "driver_id", "estimator"),
        fields_keys=lambda v: [f for f in (GPS_FIELDS if v["m"] == "gps" else ETA_FIELDS) if v.get(f) is not None],
        batch_size=5000))
    sdf[sdf["_sink"] == "kafka"].sink(KafkaRecords(os.environ["PEER_BOOTSTRAP"]))
    sdf[sdf["_sink"] == "redis"].sink(RedisSink(
        "127.0.0.1", int(os.environ["PEER_REDIS_PORT"]), 0, value_serializer=lambda v: json.dumps(v["doc"]),
        key_serializer=lambda key, value: f"{prefix}:{value['rkey']}"))
    sdf[sdf["_sink"] == "count"].sink(InputCounter())  # flushed at each checkpoint, with the others
    app.run()


if __name__ == "__main__":
    main()
