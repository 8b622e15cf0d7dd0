"""A naive per-event Faust agent (the other peer of ``bench.kafka_peers``).

What a first version usually looks like: for every event, decode, GET the order's fold
state from Redis, fold it (``projections.order_state.fold``), SET the state and the public
view back. It bumps the Redis counter ``$PEER_COUNTER`` per event.
"""

from __future__ import annotations

import os

import faust
import orjson
import redis.asyncio as aioredis

from projections.order_state import fold
from projections.order_view import public_view
from schemas.codec import AvroCodec

codec = AvroCodec(epoch_ms=True)
app = faust.App(os.environ["PEER_GROUP"], broker=f"kafka://{os.environ['PEER_BOOTSTRAP']}", value_serializer="raw",
                key_serializer="raw", store="memory://", datadir=os.environ["PEER_STATE_DIR"],
                topic_allow_declare=False, topic_disable_leader=True, web_enabled=False,
                consumer_auto_offset_reset="earliest", broker_session_timeout=10.0,
                broker_heartbeat_interval=1.0)
topic = app.topic(os.environ["PEER_TOPIC"], key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def project(stream: faust.StreamT) -> None:
    r = aioredis.Redis(host=os.environ["PEER_REDIS_HOST"], port=int(os.environ["PEER_REDIS_PORT"]))
    prefix, counter = os.environ["PEER_PREFIX"], os.environ["PEER_COUNTER"]
    async for value in stream:
        d = codec.decode(value)
        oid = d.value["order_id"]
        raw = await r.get(f"{prefix}:state:{oid}")
        st = fold(orjson.loads(raw) if raw else None, d.record_type, d.value).state
        await r.set(f"{prefix}:state:{oid}", orjson.dumps(st))
        if st["view"] is not None:
            await r.set(f"{prefix}:order:{oid}", orjson.dumps(public_view(st["view"])))
        await r.incr(counter)


if __name__ == "__main__":
    app.main()
