"""In-memory stand-ins for the stream sinks (unit tests only).

Each fake satisfies the protocol the projectors use and mirrors the real
adapter's semantics; ``tests/contract/order_store_contract.py`` runs the same
assertions against these fakes and against the real Redis adapters:

* ``FakeOrderStore``     ~ ``streams.sinks.redis_orders.RedisOrderStore`` (the Lua compare-and-set)
* ``FakeDriverPositions`` ~ ``streams.sinks.redis_positions.RedisDriverPositions``
* ``ListOutput``         ~ ``streams.sinks.kafka_output.KafkaOutput``
* ``FakePointSink``      ~ ``streams.sinks.influx.InfluxWriter``

``journal`` (optional, shareable) records the I/O calls in order, so a test can
check that outputs are flushed before the store is saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projections.timefmt import ms
from streams.sinks.errors import SinkError
from streams.sinks.redis_orders import OrderWrite, dumps


class FakeOrderStore:
    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.hashes: dict[str, dict[str, Any]] = {}  # order id -> the fields of {p}:order:{id}
        self.indexes: dict[str, set[str]] = {}  # "by-status:PAID" -> order ids
        self.save_calls = 0

    async def load(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.journal.append("store.load")
        return {oid: json.loads(self.hashes[oid]["state"]) for oid in order_ids if oid in self.hashes}

    async def save(self, writes: Iterable[OrderWrite]) -> int:
        self.journal.append("store.save")
        self.save_calls += 1
        n = 0
        for w in writes:
            self._upsert(w)
            n += 1  # like the real store: writes sent, whether or not the CAS took them
        return n

    def _upsert(self, w: OrderWrite) -> None:
        applied, pending = w.state["applied"], len(w.state["pending"])
        cur = self.hashes.get(w.order_id)
        if cur is not None and (cur["applied"] > applied or (cur["applied"] == applied and cur["pending"] > pending)):
            return
        h = self.hashes.setdefault(w.order_id, {})
        old_status, old_driver = h.get("status"), h.get("driver")
        h.update(applied=applied, pending=pending, state=dumps(w.state))
        if not w.public:
            return
        p = w.public
        status, customer = p["status"], p["customerId"]
        driver = (p.get("driverInfo") or {}).get("driverId", "")
        h.update(view=dumps(p), status=status, customer=customer, driver=driver)
        if old_status and old_status != status:
            self.indexes.get(f"by-status:{old_status}", set()).discard(w.order_id)
        self.indexes.setdefault(f"by-status:{status}", set()).add(w.order_id)
        self.indexes.setdefault(f"by-customer:{customer}", set()).add(w.order_id)
        if old_driver and old_driver != driver:
            self.indexes.get(f"by-driver:{old_driver}", set()).discard(w.order_id)
        if driver:
            self.indexes.setdefault(f"by-driver:{driver}", set()).add(w.order_id)

    async def view(self, order_id: str) -> dict[str, Any] | None:
        raw = self.hashes.get(order_id, {}).get("view")
        return None if raw is None else json.loads(raw)

    async def order_ids(self, *, status: str | None = None, customer: str | None = None,
                        driver: str | None = None) -> set[str]:
        if status:
            key = f"by-status:{status}"
        elif customer:
            key = f"by-customer:{customer}"
        elif driver:
            key = f"by-driver:{driver}"
        else:
            raise ValueError("give status, customer or driver")
        return set(self.indexes.get(key, set()))


class FakeDriverPositions:
    """Newest event time wins; an equal time keeps what is stored (like the Lua ``>=``)."""

    def __init__(self) -> None:
        self.positions: dict[str, dict[str, Any]] = {}

    async def save(self, pings: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for p in pings:
            n += 1
            at = ms(p["event_time"])
            cur = self.positions.get(p["driver_id"])
            if cur is not None and cur["at"] >= at:
                continue
            self.positions[p["driver_id"]] = {
                "driver_id": p["driver_id"], "vehicle_id": p["vehicle_id"], "event_id": p["event_id"], "at": at,
                "lat": float(p["lat"]), "lng": float(p["lng"]), "speed_kmh": float(p["speed_kmh"]),
                "heading_deg": float(p["heading_deg"])}
        return n

    async def get(self, driver_id: str) -> dict[str, Any] | None:
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

    def add(self, topic: str, key: bytes, value: bytes) -> None:
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
    """Buffers line-protocol strings; ``flush`` moves them to ``written``."""

    def __init__(self) -> None:
        self.buffer: list[str] = []
        self.written: list[str] = []
        self._fail: list[str] = []

    def fail_next_flush(self, message: str = "InfluxDB 503") -> None:
        self._fail.append(message)

    def add(self, line_protocol: str) -> None:
        self.buffer.append(line_protocol)

    async def flush(self) -> int:
        if self._fail:
            raise SinkError(f"InfluxDB write of {len(self.buffer)} points failed: {self._fail.pop(0)}")
        n = len(self.buffer)
        self.written.extend(self.buffer)
        self.buffer.clear()
        return n
