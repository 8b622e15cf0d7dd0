"""The order projection as a user would write it with Quix Streams (the peer of ``bench.kafka_peers``).

Decode with the project's codec, fold with ``projections.order_state.fold`` in Quix's own
state store (RocksDB, scoped to the message key), write the public view to Redis with
Quix's ``RedisSink``. It reports how many input records it has flushed in the Redis
counter ``$PEER_COUNTER`` (bumped at each sink write, i.e. each checkpoint).
"""

from __future__ import annotations

import os

from quixstreams import Application
from quixstreams.sinks.community.redis import RedisSink

from projections.order_state import fold
from projections.order_view import public_view
from schemas.codec import AvroCodec

codec = AvroCodec(epoch_ms=True)  # the same decode as the worker's
seen = {"in": 0, "reported": 0}


def project(value: bytes, key: str, timestamp: int, headers: object, state: object) -> dict | None:
    seen["in"] += 1
    d = codec.decode(value)
    st = fold(state.get("fold"), d.record_type, d.value).state  # type: ignore[attr-defined]
    state.set("fold", st)  # type: ignore[attr-defined]
    return public_view(st["view"]) if st["view"] else None


class CountingRedisSink(RedisSink):
    def write(self, batch: object) -> None:
        super().write(batch)  # type: ignore[arg-type]
        self._client.incrby(os.environ["PEER_COUNTER"], seen["in"] - seen["reported"])  # type: ignore[union-attr]
        seen["reported"] = seen["in"]


def main() -> None:
    app = Application(broker_address=os.environ["PEER_BOOTSTRAP"], consumer_group=os.environ["PEER_GROUP"],
                      auto_offset_reset="earliest", state_dir=os.environ["PEER_STATE_DIR"], loglevel="WARNING",
                      commit_interval=float(os.environ.get("PEER_COMMIT_INTERVAL", "1.0")))
    topic = app.topic(os.environ["PEER_TOPIC"], key_deserializer="str", value_deserializer="bytes")
    prefix = os.environ["PEER_PREFIX"]
    sdf = app.dataframe(topic).apply(project, stateful=True, metadata=True).filter(lambda v: v is not None)
    sdf.sink(CountingRedisSink(os.environ["PEER_REDIS_HOST"], int(os.environ["PEER_REDIS_PORT"]), 0,
                               key_serializer=lambda key, value: f"{prefix}:order:{key}"))
    app.run()


if __name__ == "__main__":
    main()
