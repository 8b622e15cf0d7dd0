"""Producing the city: a generator process encodes ahead, a producer process sends on schedule.

The generator (``generate``) walks ``CityTraffic`` second by second, encodes each record with the
project's codec (event time already = the wall time it is due at) and queues chunks, running ahead of
the producer by up to ``AHEAD_CHUNKS`` seconds of city time. The producer (``produce``) sends each
pre-encoded record when it is due (confluent-kafka, the workers' producer settings: idempotent,
acks=all, murmur2 so keys land where every other producer puts them), counts what it sent per topic in
shared memory (the sampler reads it every second) and remembers when it sent each event of a followed
customer's order (CLOCK_MONOTONIC, for the WebSocket delay).
"""

from __future__ import annotations

import time
from typing import Any

from bench.load.city_traffic import CityTraffic
from bench.load.mix import Mix, Schedule
from schemas.topics import GPS, ORDER_EVENTS, SENSORS, STOCK

TOPICS = (GPS.name, SENSORS.name, ORDER_EVENTS.name, STOCK.name)
TOPICS_KEYS = ("gps", "sensors", "order_events", "stock")  # the names samples and the report use
AHEAD_CHUNKS = 60


def generate(mix: Mix, schedule: Schedule, start_ms: int, followed: int, queue: Any) -> None:
    """Process target: encode the city's seconds into ``queue`` as (wall_s, topic index, key, value,
    timestamp ms, follow) tuples; ``None`` at the end."""
    from schemas.codec import AvroCodec

    codec = AvroCodec()
    index = {t: i for i, t in enumerate(TOPICS)}
    city = CityTraffic(mix, schedule, start_ms, followed_customers=followed)
    for items in city.seconds():
        queue.put([(it.wall_s, index[it.topic], it.key.encode(), codec.encode(it.record_type, it.record),
                    it.record["event_time"], it.follow) for it in items])
    queue.put(None)


def produce(bootstrap: str, start_wall: float, queue: Any, counts: Any, state: Any, conn: Any) -> None:
    """Process target: send every queued record at ``start_wall`` + its offset. ``counts[i]``: records
    sent to ``TOPICS[i]``; ``state[0]``: how late (s) the last record went out, ``state[1]`` 1 once all
    are sent and flushed. Sends back the
    followed orders' send times {(order id, version): monotonic} when done (or told to stop)."""
    from confluent_kafka import Producer

    from streams.sinks.kafka_output import idempotent_producer_config

    producer = Producer({**idempotent_producer_config(bootstrap, "kuailv-load-producer"),
                         "queue.buffering.max.messages": 1_000_000})
    sent: dict[tuple[str, int], float] = {}
    local = [0] * len(TOPICS)
    stopped = False
    while not stopped:
        chunk = queue.get()
        if chunk is None:
            break
        for wall_s, ti, key, value, ts, follow in chunk:
            due = start_wall + wall_s
            now = time.time()
            if due - now > 0.002:
                counts[:] = local
                producer.poll(0)
                time.sleep(due - now)
                if conn.poll():
                    stopped = True
                    break
            else:
                state[0] = now - due
            while True:
                try:
                    producer.produce(TOPICS[ti], value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
            local[ti] += 1
            if follow is not None:
                sent[follow] = time.monotonic()
        counts[:] = local
        producer.poll(0)
    producer.flush(60)
    counts[:] = local
    state[1] = 1.0
    if not stopped:
        conn.recv()  # "stop": the parent collects when it is ready
    conn.send(sent)
