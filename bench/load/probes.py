"""Latency probes, mixed into the load on the same topics (and so the same partitions) as the city.

One process (``run_probes``: the Redis probes and the webhook receiver) and the alert watcher in another
(``watch_alerts``); times are CLOCK_MONOTONIC, the same clock in every process:

* **visible in Redis** (target p99 < 100 ms): probe orders walk a 5-event story (created, paid, stock
  checked with a line short, picking, cancelled), one event every 1/``order_rate`` s; a probe van pings
  ``gps_rate`` times a second. Each probe event is produced with event time = now, then Redis is polled
  every ~2 ms (one pipelined round trip for every probe in flight) until the order's ``applied`` version
  or the van's position shows it. Each sample keeps the Redis round trip it took (the floor).
* **alert record** (target p99 < 1 s): the short stock check fires ``stock-shortage`` on that single
  event; a consumer reading ``kuailv.alerts.v1`` from its end (``watch_alerts``, a process of its own)
  times the alert's first record (by key).
* **webhook** (target p99 < 2 s): a loopback HTTP server (the subscription's URL, verifying nothing)
  times the first ``alert.opened`` of each probe alert against when its record was seen on the topic.

Every sample is kept with its wall time; ``None`` latency = not seen before the end (counted as missing).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import deque
from typing import Any

import orjson

from schemas.topics import ALERTS, GPS, ORDER_EVENTS
from simulator import events as ev

PROBE_CUSTOMER = "CUST-PROBE"
STORY_LEN = 5
TIMEOUT_S = 60.0


def probe_story(order_id: str) -> list[ev.Event]:
    """Created, paid, stock checked (line 2 short: ``stock-shortage`` fires), picking, cancelled."""
    _, created = ev.order_created(order_id, 1, 0, customer_id=PROBE_CUSTOMER)
    lines = created["lines"]
    return [("OrderCreated", created), ev.payment_confirmed(order_id, 2, 0, created["total_cents"]),
            ev.stock_checked(order_id, 3, 0, lines, {2: 1.0}), ev.picking_started(order_id, 4, 0),
            ev.order_cancelled(order_id, 5, 0)]


def shortage_alert_id(order_id: str) -> str:
    return f"stock-shortage/order/{order_id}"


class Receiver(http.server.ThreadingHTTPServer):
    """Records when the first ``alert.opened`` of each alert id arrived (CLOCK_MONOTONIC)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        now = time.monotonic()
        self.server.requests += 1
        try:
            msg = orjson.loads(body)
            data = msg.get("data") or {}
            aid = data.get("alert_id") or data.get("alertId")
            if msg.get("type") == "alert.opened" and aid:
                self.server.arrived.setdefault(aid, now)
        except orjson.JSONDecodeError:
            pass
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Probes:
    def __init__(self, bootstrap: str, redis_url: str, prefix: str, tag: str, order_rate: float,
                 gps_rate: float) -> None:
        import redis
        from confluent_kafka import Producer

        from schemas.codec import AvroCodec
        from streams.sinks.kafka_output import idempotent_producer_config

        self.producer = Producer({**idempotent_producer_config(bootstrap, "kuailv-load-probes"), "linger.ms": 0})
        self.redis = redis.Redis.from_url(redis_url)
        self.bootstrap, self.prefix, self.tag = bootstrap, prefix, tag
        self.order_rate, self.gps_rate = order_rate, gps_rate
        self.codec = AvroCodec()
        self.stop = threading.Event()
        self.visible: list[dict[str, Any]] = []  # {"kind", "t", "ms", "rtt_ms"}
        self.alert_due: dict[str, tuple[float, float]] = {}  # alert id -> (wall, monotonic) of the short stock check
        self.receiver = Receiver()

    # ------------------------------------------------------------------ produce + poll Redis
    def run_visibility(self) -> None:
        pending: dict[tuple[str, str], tuple[str, Any, float, float]] = {}  # (kind, id) -> (key, expected, wall, t0)
        story: deque[tuple[str, str, dict[str, Any]]] = deque()
        n_order = n_gps = 0
        start = time.monotonic()
        next_order = next_gps = start
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_order:
                if not story:
                    oid = f"KLP{self.tag}{n_order // STORY_LEN:05d}"
                    story.extend((oid, t, r) for t, r in probe_story(oid))
                oid, rtype, rec = story.popleft()
                rec["event_time"] = int(time.time() * 1000)
                t0, wall = time.monotonic(), time.time()
                self.producer.produce(ORDER_EVENTS.name, self.codec.encode(rtype, rec), oid.encode(),
                                      timestamp=rec["event_time"])
                self.producer.poll(0)
                pending[("order", f"{oid}/{rec['version']}")] = (f"{self.prefix}:order:{oid}", rec["version"], wall, t0)
                if rtype == "StockChecked":
                    self.alert_due[shortage_alert_id(oid)] = (wall, t0)
                n_order += 1
                next_order = start + n_order / self.order_rate
            if now >= next_gps:
                van = f"DRV-PROBE{self.tag}{n_gps % 20:02d}"
                at = int(time.time() * 1000)
                eid = f"probe-{self.tag}-{n_gps}"
                rec = {"event_id": eid, "driver_id": van, "vehicle_id": van.replace("DRV", "VAN"), "event_time": at,
                       "producer": "probe", "lat": 39.9 + (n_gps % 20) * 1e-3, "lng": 116.4, "speed_kmh": 30.0,
                       "heading_deg": 90.0, "accuracy_m": 5.0}
                t0, wall = time.monotonic(), time.time()
                self.producer.produce(GPS.name, self.codec.encode("GpsPing", rec), van.encode(), timestamp=at)
                self.producer.poll(0)
                pending[("gps", eid)] = (f"{self.prefix}:driver:{van}:position", eid, wall, t0)
                n_gps += 1
                next_gps = start + n_gps / self.gps_rate
            if pending:
                self._poll(pending)
            time.sleep(0.002)
        for (kind, _), (_, _, wall, _) in pending.items():
            self.visible.append({"kind": kind, "t": wall, "ms": None, "rtt_ms": None})

    def _poll(self, pending: dict[tuple[str, str], tuple[str, Any, float, float]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        items = list(pending.items())
        for (kind, _), (key, _, _, _) in items:
            pipe.hget(key, "applied" if kind == "order" else "event_id")
        t = time.monotonic()
        values = pipe.execute()
        now = time.monotonic()
        rtt = (now - t) * 1000
        for ((kind, ident), (_, expected, wall, t0)), value in zip(items, values, strict=True):
            if kind == "order":
                seen = value is not None and int(value) >= expected
            else:
                seen = value is not None and value.decode() == expected
            if seen or now - t0 > TIMEOUT_S:
                self.visible.append({"kind": kind, "t": wall, "ms": (now - t0) * 1000 if seen else None,
                                     "rtt_ms": rtt})
                del pending[(kind, ident)]

    def results(self) -> dict[str, Any]:
        return {"visible": self.visible, "alert_due": self.alert_due, "arrived": self.receiver.arrived,
                "webhook_requests": self.receiver.requests}


def watch_alerts(bootstrap: str, tag: str, conn: Any) -> None:
    """Process target (its own, so no other probe thread delays a read): read ``kuailv.alerts.v1`` from its
    end until told "stop"; send back {probe alert id: CLOCK_MONOTONIC of its first record}."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from config.kafka_client import client_config

    c = Consumer({**client_config(bootstrap), "group.id": f"kuailv-load-probe-{tag}", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    meta = c.list_topics(ALERTS.name, timeout=10).topics[ALERTS.name]
    c.assign([TopicPartition(ALERTS.name, p, OFFSET_END) for p in meta.partitions])
    wanted = b"stock-shortage/order/KLP" + tag.encode()
    seen: dict[str, float] = {}
    conn.send("ready")
    while not conn.poll():
        for msg in c.consume(500, 0.005):
            key = msg.key()
            if msg.error() is None and key and key.startswith(wanted):
                seen.setdefault(key.decode(), time.monotonic())
    c.close()
    conn.send(seen)


def alert_results(due: dict[str, tuple[float, float]], seen: dict[str, float],
                  arrived: dict[str, float]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pure: (alert condition -> record samples, record -> webhook samples) from the probes' times (wall and
    monotonic of each short stock check, monotonic of the record read, of the webhook's arrival)."""
    alerts, hooks = [], []
    for aid, (wall, t0) in due.items():
        got = seen.get(aid)
        alerts.append({"t": wall, "ms": (got - t0) * 1000 if got is not None else None})
        if got is not None:
            hook = arrived.get(aid)
            hooks.append({"t": wall + (got - t0), "ms": (hook - got) * 1000 if hook is not None else None})
    return alerts, hooks


def run_probes(bootstrap: str, redis_url: str, prefix: str, tag: str, order_rate: float, gps_rate: float,
               conn: Any) -> None:
    """Process target: send the receiver's URL, wait for "start", probe until "stop", send the results."""
    probes = Probes(bootstrap, redis_url, prefix, tag, order_rate, gps_rate)
    threading.Thread(target=probes.receiver.serve_forever, daemon=True).start()
    conn.send(f"http://127.0.0.1:{probes.receiver.server_address[1]}/hook")
    conn.recv()  # "start"
    visibility = threading.Thread(target=probes.run_visibility, daemon=True)
    visibility.start()
    conn.recv()  # "stop"
    time.sleep(3)  # the last alerts and webhooks in flight
    probes.stop.set()
    visibility.join(10)
    probes.producer.flush(10)
    probes.receiver.shutdown()
    conn.send(probes.results())
