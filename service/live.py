"""The live feed: ``/ws`` pushes order changes, tracking records and alerts as the projections publish them.

Fed from the topics, not by polling Redis: one Kafka reader per service process (``LiveFeed``, a
thread with no consumer group) reads the order-state, alert and order-ETA topics from their end
and hands each batch to the ``Hub`` on the event loop, which sends every change to the clients
whose interests it matches (an index by order, customer, driver and warehouse, so the cost is per
matching client, not per client) and whose role may see it (``policy.change_visible``, checked per
change; warehouse staff get the redacted order view).

Every change carries the feed's cursor after it. A client that reconnects with the last cursor it
received first gets what it missed, read back from Kafka between its cursor and the position its
live feed starts at (registered before the read, so there is no gap and no overlap), then the live
feed. Idle clients get a ``position`` message every few seconds so their cursor keeps up. A client
that cannot keep up (its queue is full) is closed with code 1013 and resumes from its cursor: one
slow phone never holds up the others, and loses nothing.

Protocol (JSON text frames), after connecting to ``/ws?token=<JWT>`` (or with the
``Authorization`` header):

    -> {"subscribe": [{"order": "O1"} | {"customer": "C1"} | {"driver": "D1"} | {"warehouse": "W1"}
                      | {"alerts": true}], "resume": "<cursor>"?}
    <- {"type": "subscribed", "cursor": "...", "resumed": <changes replayed>}
    <- {"type": "change", "kind": "order" | "eta" | "alert", "orderId": ..., "data": {...}, "cursor": "..."}
    <- {"type": "position", "cursor": "..."}
    <- {"type": "error", "detail": "..."} then close 4400 (bad request), 4401 (no valid token), 4403 (denied)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from config.kafka_client import client_config
from config.settings import Settings
from projections.order_view import public_view
from projections.timefmt import ms
from schemas.topics import ALERTS, GPS, ORDER_ETAS, ORDER_STATE, TopicSpec
from service import metrics
from service.live_changes import Change, Interest, Positions, catch_up_ranges, encode_cursor, matches, positions_frame
from service.policy import change_visible, positions_visible, redact
from service.reveal import Revealer

log = logging.getLogger(__name__)

Deliver = Callable[[list["Change"], dict[str, list[tuple[int, int]]]], None]
FEED_TOPICS: tuple[tuple[TopicSpec, str], ...] = ((ORDER_STATE, "order"), (ALERTS, "alert"), (ORDER_ETAS, "eta"))
QUEUE_LIMIT = 2000  # changes waiting for one client before it is closed (it resumes from its cursor)
POSITION_EVERY_S = 5.0
VANS_EVERY_S = 1.0  # van positions are coalesced per driver and sent at most this often
MAX_CATCH_UP = 50_000  # changes replayed to one resuming client; beyond that it re-reads the REST state
OWNERS_KEPT = 200_000  # order -> (customer, driver, warehouse), for tracking records (they name no customer)


class Owners:
    """Who an order belongs to, learnt from the order-state records the feed reads (bounded LRU), with a
    Redis lookup for an order the feed has not seen yet (a tracking record of an older order)."""

    def __init__(self, lookup: Callable[[str], tuple[str | None, str | None, str | None] | None]) -> None:
        self._lookup = lookup
        self._known: OrderedDict[str, tuple[str | None, str | None, str | None]] = OrderedDict()
        self._lock = threading.Lock()  # the feed thread and resuming clients' reads both learn

    def learn(self, order_id: str, owners: tuple[str | None, str | None, str | None]) -> None:
        with self._lock:
            self._known[order_id] = owners
            self._known.move_to_end(order_id)
            if len(self._known) > OWNERS_KEPT:
                self._known.popitem(last=False)

    def driver_of(self, order_id: str) -> str | None:
        """The order's current driver if the feed knows the order (no lookup: called on the event loop)."""
        with self._lock:
            found = self._known.get(order_id)
        return None if found is None else found[1]

    def of(self, order_id: str) -> tuple[str | None, str | None, str | None]:
        with self._lock:
            found = self._known.get(order_id)
        if found is None:
            found = self._lookup(order_id) or (None, None, None)
            self.learn(order_id, found)
        return found


def to_change(kind: str, topic: str, partition: int, offset: int, value: Mapping[str, Any],
              owners: Owners, opened: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Change:
    """One decoded record -> a change with its owners (the order view goes out as the public JSON, its sealed
    personal data opened by ``opened``, here in the feed's thread; each client's role then cuts it)."""
    if kind == "order":
        view = public_view(value)
        if opened is not None:
            view = opened(view)
        driver = (view.get("driverInfo") or {}).get("driverId")
        owners.learn(view["orderId"], (view["customerId"], driver, view["warehouseId"]))
        return Change(kind, topic, partition, offset, view["orderId"], view["customerId"], driver,
                      view["warehouseId"], view)
    if kind == "alert":
        return Change(kind, topic, partition, offset, value.get("order_id"), value.get("customer_id"),
                      value.get("driver_id"), value.get("warehouse_id"), dict(value))
    customer, _, warehouse = owners.of(value["order_id"])
    return Change(kind, topic, partition, offset, value["order_id"], customer, value.get("driver_id"),
                  warehouse, dict(value))


class LiveFeed:
    """The Kafka side: partitions and end offsets at start, the reading thread, and ranged reads for
    resuming clients. Connects in ``start``, never at construction."""

    def __init__(self, settings: Settings, codec: Any, owner_lookup: Callable[[str], Any]) -> None:
        self.settings = settings
        self.codec = codec
        self.kinds = {settings.topic_renames.get(t.name, t.name): kind for t, kind in FEED_TOPICS}
        self.owners = Owners(owner_lookup)
        self.opened = Revealer(settings).opened
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _consumer(self) -> Any:
        from confluent_kafka import Consumer

        return Consumer({**client_config(self.settings.kafka_bootstrap), "group.id": "kuailv-api-live",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})

    def start(self, deliver: Deliver) -> dict[str, list[int]]:
        """Assign every partition at its current end; return those positions; read on in a thread."""
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        meta = consumer.list_topics(timeout=10)
        start: dict[str, list[int]] = {}
        for topic in self.kinds:
            if topic not in meta.topics or meta.topics[topic].error is not None:
                raise RuntimeError(f"live feed: topic {topic} missing on {self.settings.kafka_bootstrap}")
            parts = sorted(meta.topics[topic].partitions)
            start[topic] = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts]
        consumer.assign([TopicPartition(t, p, o) for t, offs in start.items() for p, o in enumerate(offs)])
        self._thread = threading.Thread(target=self._run, args=(consumer, deliver), name="live-feed", daemon=True)
        self._thread.start()
        return start

    def _run(self, consumer: Any, deliver: Deliver) -> None:
        try:
            while not self._stop.is_set():
                first = consumer.poll(0.1)  # returns at the first record (consume() would wait to fill its batch)
                if first is None:
                    continue
                msgs = [first, *consumer.consume(num_messages=999, timeout=0)]
                changes, advanced = self._changes(msgs)
                if advanced:
                    deliver(changes, advanced)
        except Exception:  # the feed must not die silently: the service's readiness reports it
            log.exception("live feed stopped")
            raise
        finally:
            consumer.close()

    def _changes(self, msgs: Iterable[Any]) -> tuple[list[Change], dict[str, list[tuple[int, int]]]]:
        """Decoded changes and, per topic, every (partition, offset) read, in the order read."""
        changes: list[Change] = []
        advanced: dict[str, list[tuple[int, int]]] = {}
        for m in msgs:
            if m.error() is not None:
                log.warning("live feed: kafka error %s", m.error())
                continue
            topic, p, off = m.topic(), m.partition(), m.offset()
            advanced.setdefault(topic, []).append((p, off))
            if m.value() is None:  # a tombstone: nothing to show
                continue
            try:
                decoded = self.codec.decode(m.value())
                changes.append(to_change(self.kinds[topic], topic, p, off, decoded.value, self.owners, self.opened))
            except Exception as exc:  # bad input never stops the feed; the workers dead-letter it
                log.warning("live feed: skipped %s[%d]@%d: %s", topic, p, off, exc)
        return changes, advanced

    def read_ranges(self, ranges: Mapping[tuple[str, int], tuple[int, int]], limit: int) -> list[Change] | None:
        """Every change in [from, to) per partition, in offset order per partition; None past ``limit``."""
        from confluent_kafka import TopicPartition

        if not ranges:
            return []
        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(t, p, lo) for (t, p), (lo, _) in ranges.items()])
            remaining = {tp: hi for tp, (_, hi) in ranges.items()}
            out: list[Change] = []
            idle = 0
            while remaining and idle < 10:
                msgs = consumer.consume(num_messages=1000, timeout=0.2)
                idle = 0 if msgs else idle + 1
                for m in msgs:
                    if m.error() is not None:
                        continue
                    tp = (m.topic(), m.partition())
                    hi = remaining.get(tp)
                    if hi is None or m.offset() >= hi:
                        continue
                    if m.offset() == hi - 1:
                        del remaining[tp]
                    if m.value() is not None:
                        try:
                            decoded = self.codec.decode(m.value())
                            out.append(to_change(self.kinds[tp[0]], tp[0], tp[1], m.offset(), decoded.value,
                                                 self.owners, self.opened))
                        except Exception as exc:
                            log.warning("live feed resume: skipped %s[%d]@%d: %s", *tp, m.offset(), exc)
                    if len(out) > limit:
                        return None
                # a compacted topic may have removed the range's last offsets: stop at the partition's end
                for tp in list(remaining):
                    pos = consumer.position([TopicPartition(*tp)])[0].offset
                    if pos >= remaining[tp]:
                        del remaining[tp]
            return out
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class PositionFeed:
    """Van positions for the maps: a thread reads the GPS topic from its end (no group, no cursor: positions
    are ephemeral) and keeps the newest fix per driver in a ``Positions`` coalescer the hub drains once a
    second. A city's 2,000 pings/s become one frame per second per map, with each van's latest fix."""

    def __init__(self, settings: Settings, codec: Any) -> None:
        self.settings = settings
        self.codec = codec
        self.topic = settings.topic_renames.get(GPS.name, GPS.name)
        self.positions = Positions()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**client_config(self.settings.kafka_bootstrap), "group.id": "kuailv-api-positions",
                             "enable.auto.commit": False, "enable.auto.offset.store": False})
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            consumer.close()
            log.warning("live positions: topic %s missing on %s: maps get no live vans",
                        self.topic, self.settings.kafka_bootstrap)
            return
        ends = [consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in sorted(meta.partitions)]
        consumer.assign([TopicPartition(self.topic, p, off) for p, off in enumerate(ends)])
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="live-positions", daemon=True)
        self._thread.start()

    def _run(self, consumer: Any) -> None:
        try:
            while not self._stop.is_set():
                first = consumer.poll(0.1)
                if first is None:
                    continue
                pings = []
                for m in [first, *consumer.consume(num_messages=999, timeout=0)]:
                    if m.error() is not None or m.value() is None:
                        continue
                    try:
                        v = self.codec.decode(m.value()).value
                        pings.append({"driver_id": v["driver_id"], "vehicle_id": v["vehicle_id"], "lat": v["lat"],
                                      "lng": v["lng"], "at_ms": ms(v["event_time"]), "speed_kmh": v["speed_kmh"]})
                    except Exception as exc:  # bad input never stops the feed; the workers dead-letter it
                        log.warning("live positions: skipped %s[%d]@%d: %s", m.topic(), m.partition(),
                                    m.offset(), exc)
                with self.lock:
                    for ping in pings:
                        self.positions.offer(ping)
        except Exception:
            log.exception("live positions stopped")
            raise
        finally:
            consumer.close()

    def drain(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return self.positions.drain()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass(eq=False)
class Client:
    caller: Any
    interests: list[Interest]
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)  # bounded by ``Hub._enqueue``
    overflowed: bool = False

    def wants(self, change: Change) -> bool:
        return change_visible(self.caller, change.customer_id, change.driver_id, change.warehouse_id)

    def frame(self, change: Change) -> str:
        if self.caller.role == "warehouse_staff":
            return change.frame(lambda d: redact(self.caller, d))
        return change.frame()


class Hub:
    """The event-loop side: the clients, their interest index, and the feed's position (next offset per
    partition). Everything here runs on the loop; the feed thread hands batches over with
    ``call_soon_threadsafe``."""

    def __init__(self) -> None:
        self.position: dict[str, list[int]] = {}
        self.index: dict[tuple[str, str | None], set[Client]] = defaultdict(set)
        self.clients: set[Client] = set()

    def add(self, client: Client) -> dict[str, list[int]]:
        """Register ``client`` for live changes; return where its live feed starts."""
        self.clients.add(client)
        for i in client.interests:
            self.index[i.index_key()].add(client)
        metrics.WS_CLIENTS.set(len(self.clients))
        return {t: list(offs) for t, offs in self.position.items()}

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        for i in client.interests:
            bucket = self.index.get(i.index_key())
            if bucket is not None:
                bucket.discard(client)
                if not bucket:
                    del self.index[i.index_key()]
        metrics.WS_CLIENTS.set(len(self.clients))

    def publish(self, changes: list[Change], advanced: Mapping[str, list[tuple[int, int]]]) -> None:
        by_position = {(c.topic, c.partition, c.offset): c for c in changes}
        for topic, offsets in advanced.items():
            ends = self.position.setdefault(topic, [])
            for p, off in offsets:
                while len(ends) <= p:
                    ends.append(0)
                ends[p] = off + 1
                change = by_position.get((topic, p, off))
                if change is None:
                    continue
                targets: set[Client] = set()
                for key in change.index_keys():
                    targets |= self.index.get(key, set())
                if not targets:
                    continue
                change.cursor = encode_cursor(self.position)
                for client in targets:
                    if client.wants(change):
                        self._enqueue(client, client.frame(change))
                        metrics.WS_MESSAGES.labels(change.kind).inc()

    def publish_positions(self, moved: Mapping[str, Mapping[str, Any]],
                          driver_of_order: Callable[[str], str | None]) -> None:
        """Send the vans that moved: all of them to ``fleet`` clients, a driver's to clients following that
        driver or an order that driver carries now (``driver_of_order``: the feed's owners, no I/O)."""
        if not moved:
            return
        fleet = self.index.get(("fleet", None), set())
        if fleet:
            frame = positions_frame(moved.values())
            for client in fleet:
                self._enqueue(client, frame)
            metrics.WS_MESSAGES.labels("positions").inc(len(fleet))
        for (kind, key), clients in list(self.index.items()):
            if kind == "driver" and key in moved:
                driver = key
            elif kind == "order" and key is not None:
                driver = driver_of_order(key)
                if driver not in moved:
                    continue
            else:
                continue
            frame = positions_frame([moved[driver]])
            for client in clients:
                if client not in fleet and positions_visible(client.caller):
                    self._enqueue(client, frame)
                    metrics.WS_MESSAGES.labels("positions").inc()

    @staticmethod
    def _enqueue(client: Client, frame: str) -> None:
        if client.overflowed:
            return
        if client.queue.qsize() >= QUEUE_LIMIT:
            client.overflowed = True
            metrics.WS_DROPPED.inc()
            client.queue.put_nowait(None)  # the sender closes it with 1013; the client resumes from its cursor
            return
        client.queue.put_nowait(frame)

    def cursor(self) -> str:
        return encode_cursor(self.position)


class Live:
    """The feed and the hub of one service process, started by the first WebSocket client."""

    def __init__(self, settings: Settings, codec: Any, owner_lookup: Callable[[str], Any]) -> None:
        self.feed = LiveFeed(settings, codec, owner_lookup)
        self.vans = PositionFeed(settings, codec)
        self.hub = Hub()
        self._started: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def ensure_started(self) -> None:
        if self._started is None:
            loop = asyncio.get_running_loop()
            self._started = loop.create_future()

            def deliver(changes: list[Change], advanced: dict[str, list[tuple[int, int]]]) -> None:
                loop.call_soon_threadsafe(self.hub.publish, changes, advanced)

            try:
                self.hub.position = await loop.run_in_executor(None, self.feed.start, deliver)
                await loop.run_in_executor(None, self.vans.start)
                self._flusher = asyncio.ensure_future(self._send_positions())
                self._started.set_result(None)
            except Exception as exc:
                self._started.set_exception(exc)
                fut, self._started = self._started, None
                fut.exception()  # retrieved: the next client tries again
                raise
        await asyncio.shield(self._started)

    async def catch_up(self, client: Client, resume: Mapping[str, list[int]],
                       live_from: Mapping[str, list[int]]) -> list[str] | None:
        """The frames a resuming client missed, in the order the feed would have sent them."""
        ranges = catch_up_ranges(resume, live_from)
        loop = asyncio.get_running_loop()
        missed = await loop.run_in_executor(None, self.feed.read_ranges, ranges, MAX_CATCH_UP)
        if missed is None:
            return None
        frames = []
        position = {t: list(offs) for t, offs in resume.items()}
        for change in missed:
            offs = position.setdefault(change.topic, list(live_from[change.topic]))
            offs[change.partition] = change.offset + 1
            if matches(client.interests, change) and client.wants(change):
                change.cursor = encode_cursor(position)
                frames.append(client.frame(change))
        return frames

    async def _send_positions(self) -> None:
        while True:
            await asyncio.sleep(VANS_EVERY_S)
            try:
                self.hub.publish_positions(self.vans.drain(), self.feed.owners.driver_of)
            except Exception:  # one bad round must not end the maps' live vans
                log.exception("live positions: a send round failed")

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.feed.stop()
        self.vans.stop()


def dumps(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode()
