"""Order-log records -> audit drafts (``audit.order_events``), and the audit agent's batch steps without
Kafka (``audit.worker.AuditAgent`` on a memory store): every record is chained exactly once, readable
or not, and the delivery's signing record is in the chain."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from audit.chain import Draft
from audit.order_events import draft_of
from audit.store import AuditStore, AuditStoreUnavailable
from audit.worker import AuditAgent, AuditWriteFailed
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from simulator.events import T0, order_story

TOPIC = "kuailv.order-events.v1"
ACTUAL = "kuailv.order-events.v1.it-x"  # a renamed topic, as tests and benchmarks run them
CODEC = AvroCodec(epoch_ms=True)


def records(order_id: str = "KL1", partition: int = 4, ending: str = "signed") -> list[SourceRecord]:
    return [SourceRecord(TOPIC, partition, 10 + i, order_id.encode(), AvroCodec().encode(t, e), T0 + i)
            for i, (t, e) in enumerate(order_story(order_id, T0, ending=ending))]


@pytest.fixture
def store() -> Iterator[AuditStore]:
    s = AuditStore.from_url("memory://")
    yield s
    s.close()


def test_each_event_is_a_draft_on_its_partitions_chain() -> None:
    recs = records()
    drafts = [draft_of(CODEC, r, ACTUAL) for r in recs]
    assert {d.chain for d in drafts} == {"order-events/4"}
    assert [d.kind for d in drafts][:2] == ["OrderCreated", "PaymentConfirmed"] and drafts[-1].kind == "OrderDelivered"
    assert all(d.subject == "KL1" for d in drafts)
    first = drafts[0]
    assert first.source is not None and (first.source.topic, first.source.partition, first.source.offset) == \
        (ACTUAL, 4, 10)
    assert first.ref == f"kafka:{ACTUAL}/4/10"
    payload = orjson.loads(first.payload)
    assert payload["record_sha256"] == hashlib.sha256(recs[0].value or b"").hexdigest()
    assert payload["event"]["order_id"] == "KL1" and payload["key"] == "KL1" and first.at_ms == T0


def test_the_delivery_carries_its_signing_record() -> None:
    delivered = draft_of(CODEC, records()[-1])
    payload = orjson.loads(delivered.payload)
    assert payload["signing"] == {"receiver": "李厨师", "signature_ref": "sig/KL1.png", "photo_ref": None,
                                  "signed_at_ms": payload["event"]["event_time"],
                                  "location": payload["event"]["location"]}
    assert delivered.at_ms == payload["event"]["event_time"]


@pytest.mark.parametrize("value,code", [(b"not avro at all", "NOT_AVRO_FRAMED"), (None, "NOT_AVRO_FRAMED"),
                                        (b"\x00\x00\x00\x7f\xff\x01", "UNKNOWN_SCHEMA_ID")])
def test_an_undecodable_record_is_chained_with_its_reason_and_bytes(value: bytes | None, code: str) -> None:
    d = draft_of(CODEC, SourceRecord(TOPIC, 1, 7, b"\xff\xfe", value, 123))
    payload = orjson.loads(d.payload)
    assert d.kind == "undecodable" and d.chain == "order-events/1" and d.subject is None and d.at_ms == 123
    assert payload["undecodable"]["reason_code"] == code and payload["undecodable"]["reason"]
    assert payload["key"] == {"$base64": "//4="}
    assert payload["value"] == (None if value is None else {"$base64": base64.b64encode(value).decode()})


def test_a_record_of_another_type_is_chained_as_unexpected() -> None:
    ping = AvroCodec().encode("GpsPing", {"event_id": "e1", "driver_id": "DRV-1", "vehicle_id": "V1", "event_time": T0,
                                          "producer": "driver-app", "lat": 39.9, "lng": 116.4, "speed_kmh": 30.0,
                                          "heading_deg": 90.0, "accuracy_m": 5.0})
    d = draft_of(CODEC, SourceRecord(TOPIC, 0, 1, b"DRV-1", ping, T0))
    assert d.kind == "undecodable" and orjson.loads(d.payload)["undecodable"]["reason_code"] == "UNEXPECTED_RECORD_TYPE"


def test_the_agent_chains_a_batch_and_a_redelivered_batch_adds_nothing(store: AuditStore) -> None:
    agent = AuditAgent(CODEC, store, {TOPIC: ACTUAL})
    recs = records("KL1", 4) + records("KL2", 5, ending="refused")
    staged = agent.process(recs[:9])
    agent.write(staged)
    assert staged.counts.applied == 9 and staged.counts.duplicates == 0
    again = agent.process(recs)  # after a crash before the commit: the batch comes again, and more
    agent.write(again)
    assert again.counts.applied == len(recs) - 9 and again.counts.duplicates == 9
    assert all(store.verify(c).ok for c in store.chains())
    assert [e.source.offset for e in store.entries("order-events/4")] == [r.offset for r in recs if r.partition == 4]  # type: ignore[union-attr]


def test_a_parked_batch_is_still_chained(store: AuditStore) -> None:
    agent = AuditAgent(CODEC, store)
    recs = records()[:3]
    staged = agent.park(recs, "RuntimeError: boom")
    agent.write(staged)
    entries = list(store.entries("order-events/4"))
    assert [e.kind for e in entries] == ["undecodable"] * 3
    assert orjson.loads(entries[0].payload)["undecodable"] == {"reason_code": "PROCESSING_ERROR",
                                                               "reason": "RuntimeError: boom", "schema_id": None}


class _FailingStore:
    describe = "memory://broken"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def append(self, drafts: list[Draft]) -> Any:
        raise self.exc


def test_a_failed_write_is_retried_never_parked() -> None:
    """Every write failure is a SinkError: the batch loop retries it with backoff and commits nothing."""
    for exc, kind in [(AuditStoreUnavailable("locked"), AuditStoreUnavailable), (ValueError("bug"), AuditWriteFailed)]:
        agent = AuditAgent(CODEC, _FailingStore(exc))  # type: ignore[arg-type]
        with pytest.raises(kind) as err:
            agent.write(agent.process(records()[:2]))
        assert isinstance(err.value, AuditStoreUnavailable) or "order-events.v1[4]@10" in str(err.value)
