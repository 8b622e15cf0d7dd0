"""In-memory stand-ins for the stream sinks (unit tests only).

Each fake satisfies the interface the agents use and mirrors the real adapter's
semantics; ``tests/contract/order_store_contract.py`` runs the same assertions
against these fakes and against the real Redis adapters:

* ``FakeOrderStore``      ~ ``streams.sinks.redis_orders.RedisOrderStore`` (the Lua compare-and-set)
* ``FakeDriverPositions`` ~ ``streams.sinks.redis_positions.RedisDriverPositions``
* ``ListOutput``          ~ ``streams.sinks.kafka_output.KafkaOutput``
* ``FakePointSink``       ~ ``streams.sinks.influx.InfluxWriter``
* ``FakeStats``           ~ ``streams.sinks.stats.StatsSink`` (its pipeline runs queued calls in order)

``journal`` (optional, shareable) records the I/O calls in order, so a test can
check that outputs are flushed before the store is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from projections.keyed_batch import Counts
from projections.order_step import bookkeeping, with_view
from projections.order_view import public_view
from projections.timefmt import ms
from schemas.codec import AvroCodec
from streams.sinks.errors import SinkError
from streams.sinks.redis_orders import OrderWrite, dumps

CODEC = AvroCodec(epoch_ms=True)


class FakePipeline:
    """Queues calls and runs them in order on ``execute`` (like a Redis pipeline)."""

    def __init__(self, journal: list[str]) -> None:
        self.calls: list[Callable[[], Any]] = []
        self.journal = journal

    def queue(self, call: Callable[[], Any]) -> None:
        self.calls.append(call)

    def execute(self) -> list[Any]:
        self.journal.append("redis.execute")
        calls, self.calls = self.calls, []
        return [c() for c in calls]


class FakeStats:
    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.totals: dict[str, Counts] = {}

    def pipeline(self) -> FakePipeline:
        return FakePipeline(self.journal)

    def add(self, pipe: FakePipeline, agent: str, counts: Counts) -> None:
        def do() -> None:
            self.totals.setdefault(agent, Counts()).add(counts)

        pipe.queue(do)


class FakeOrderStore:
    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.hashes: dict[str, dict[str, Any]] = {}  # order id -> the fields of {p}:order:{id}
        self.indexes: dict[str, set[str]] = {}  # "by-status:PAID" -> order ids
        self.save_calls = 0
        self.loads: list[list[str]] = []

    def load(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.journal.append("store.load")
        self.loads.append(list(order_ids))
        out = {}
        for oid in order_ids:
            h = self.hashes.get(oid)
            if h is not None:
                proj = h.get("projection")
                out[oid] = with_view(orjson.loads(h["fold"]), CODEC.decode(proj).value if proj else None)
        return out

    def save(self, writes: Iterable[OrderWrite], pipe: FakePipeline | None = None) -> list[str] | None:
        writes = list(writes)
        if pipe is not None:
            pipe.queue(lambda: self.save(writes))
            return None
        self.journal.append("store.save")
        self.save_calls += 1
        return [w.order_id for w in writes if not self._upsert(w)]

    def _upsert(self, w: OrderWrite) -> bool:
        applied, pending = w.state["applied"], len(w.state["pending"])
        cur = self.hashes.get(w.order_id)
        if cur is not None and (cur["applied"] > applied or (cur["applied"] == applied and cur["pending"] > pending)):
            return False
        h = self.hashes.setdefault(w.order_id, {})
        old_status, old_driver, old_warehouse = h.get("status"), h.get("driver"), h.get("warehouse")
        h.update(applied=applied, pending=pending, fold=dumps(bookkeeping(w.state)))
        view = w.state["view"]
        if w.projection is None or view is None:
            return True
        status, customer, warehouse = view["status"], view["customer_id"], view["warehouse_id"]
        driver = (view["driver"] or {}).get("driver_id", "")
        h.update(projection=w.projection, status=status, customer=customer, driver=driver, warehouse=warehouse)
        if old_status and old_status != status:
            self.indexes.get(f"by-status:{old_status}", set()).discard(w.order_id)
        self.indexes.setdefault(f"by-status:{status}", set()).add(w.order_id)
        self.indexes.setdefault(f"by-customer:{customer}", set()).add(w.order_id)
        if old_driver and old_driver != driver:
            self.indexes.get(f"by-driver:{old_driver}", set()).discard(w.order_id)
        if driver:
            self.indexes.setdefault(f"by-driver:{driver}", set()).add(w.order_id)
        if old_warehouse and old_warehouse != warehouse:
            self.indexes.get(f"by-warehouse:{old_warehouse}", set()).discard(w.order_id)
        self.indexes.setdefault(f"by-warehouse:{warehouse}", set()).add(w.order_id)
        return True

    def projection(self, order_id: str) -> dict[str, Any] | None:
        raw = self.hashes.get(order_id, {}).get("projection")
        return None if raw is None else CODEC.decode(raw).value

    def view(self, order_id: str) -> dict[str, Any] | None:
        v = self.projection(order_id)
        return None if v is None else public_view(v)

    def order_ids(self, *, status: str | None = None, customer: str | None = None,
                  driver: str | None = None, warehouse: str | None = None) -> set[str]:
        if status:
            key = f"by-status:{status}"
        elif customer:
            key = f"by-customer:{customer}"
        elif driver:
            key = f"by-driver:{driver}"
        elif warehouse:
            key = f"by-warehouse:{warehouse}"
        else:
            raise ValueError("give status, customer, driver or warehouse")
        return set(self.indexes.get(key, set()))


class FakeDriverPositions:
    """Newest event time wins; an equal time keeps what is stored (like the Lua ``<``)."""

    def __init__(self) -> None:
        self.positions: dict[str, dict[str, Any]] = {}

    def save(self, pings: Iterable[Mapping[str, Any]], pipe: FakePipeline | None = None) -> int | None:
        pings = list(pings)
        if pipe is not None:
            pipe.queue(lambda: self.save(pings))
            return None
        n = 0
        for p in pings:
            at = ms(p["event_time"])
            cur = self.positions.get(p["driver_id"])
            if cur is not None and cur["at"] >= at:
                continue
            n += 1
            self.positions[p["driver_id"]] = {
                "driver_id": p["driver_id"], "vehicle_id": p["vehicle_id"], "event_id": p["event_id"], "at": at,
                "lat": float(p["lat"]), "lng": float(p["lng"]), "speed_kmh": float(p["speed_kmh"]),
                "heading_deg": float(p["heading_deg"])}
        return n

    def get(self, driver_id: str) -> dict[str, Any] | None:
        cur = self.positions.get(driver_id)
        return None if cur is None else dict(cur)


class ListOutput:
    """``add`` buffers; ``flush`` moves the buffer to ``records`` (what a consumer would see)."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.buffer: list[tuple[str, bytes, bytes]] = []
        self.records: list[tuple[str, bytes, bytes]] = []
        self._fail: list[str] = []

    def fail_next_flush(self, message: str = "broker unreachable") -> None:
        self._fail.append(message)

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None) -> None:
        self.buffer.append((topic, key, value))

    def flush(self) -> int:
        self.journal.append("output.flush")
        if self._fail:
            raise SinkError(f"{len(self.buffer)} records still unacknowledged: {self._fail.pop(0)}")
        n = len(self.buffer)
        self.records.extend(self.buffer)
        self.buffer.clear()
        return n

    def on(self, topic: str) -> list[tuple[bytes, bytes]]:
        return [(k, v) for t, k, v in self.records if t == topic]


class FakePointSink:
    """``write`` appends line-protocol strings to ``written`` (or fails once when told to)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self._fail: list[str] = []

    def fail_next_write(self, message: str = "InfluxDB 503") -> None:
        self._fail.append(message)

    def write(self, lines: list[str]) -> int:
        if self._fail:
            raise SinkError(f"InfluxDB write of {len(lines)} points failed: {self._fail.pop(0)}")
        self.written.extend(lines)
        return len(lines)

    def close(self) -> None:
        return None
