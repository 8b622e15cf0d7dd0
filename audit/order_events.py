"""Order-event records -> audit drafts: one per record, on the chain of its partition. Pure.

Chain ``order-events/<partition>``: the order log's own order, so an order's entries are in its
version order (an order's events share a partition) and one partition's records never wait for
another's. Entry fields: kind = the record type, subject = the order id, at = the event time,
source = (topic, partition, offset) as consumed, ref = that position (the idempotency key).

Payload (canonical JSON): ``key``, ``kafka_timestamp_ms``, ``record_sha256`` (of the record's bytes
as they were on the log: anyone holding the record can check it against the entry), and

- a decoded event: ``record_type``, ``schema_id``, ``event`` (every field, times in epoch ms); an
  ``OrderDelivered`` also carries ``signing``: receiver, signature reference, photo reference, time
  and location of the signature, the delivery's tamper-evident e-signature;
- a record that does not decode (or is not an order event, or our code failed on it): kind
  ``undecodable``, ``undecodable`` = {reason_code, reason, schema_id} and ``value`` (the raw bytes,
  base64). The trail records what was on the log, readable or not.
"""

from __future__ import annotations

import hashlib
import traceback
from typing import Any

from audit.canonical import canonical_json
from audit.chain import Draft, Position
from projections.keyed_batch import decode_as
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import ORDER_EVENTS

CHAIN_PREFIX = "order-events"
UNDECODABLE = "undecodable"


def chain_of(partition: int) -> str:
    return f"{CHAIN_PREFIX}/{partition}"


def signing_record(event: dict[str, Any]) -> dict[str, Any]:
    """The signing record of an ``OrderDelivered`` event."""
    return {"receiver": event.get("receiver_name"), "signature_ref": event.get("signature_ref"),
            "photo_ref": event.get("photo_ref"), "signed_at_ms": event.get("event_time"),
            "location": event.get("location")}


def draft_of(codec: Any, rec: SourceRecord, topic: str | None = None) -> Draft:
    """The draft of one consumed record; never raises (a failure is an ``undecodable`` entry).
    ``topic``: the topic actually consumed when it differs from ``rec.topic`` (topic renames)."""
    position = Position(topic or rec.topic, rec.partition, rec.offset)
    decoded = decode_as(codec, rec, ORDER_EVENTS.records)
    if type(decoded) is DeadLetter:
        return undecodable_draft(rec, position, decoded.reason_code, decoded.reason, decoded.schema_id)
    try:
        event = decoded.value
        payload = {**_common(rec), "record_type": decoded.record_type, "schema_id": decoded.schema_id,
                   "event": event}
        if decoded.record_type == "OrderDelivered":
            payload["signing"] = signing_record(event)
        order_id = event.get("order_id")
        at = event.get("event_time")
        return Draft(chain_of(rec.partition), decoded.record_type, canonical_json(payload),
                     order_id if isinstance(order_id, str) else _text(rec.key),
                     at if isinstance(at, int) else rec.timestamp_ms, None, position, position.ref)
    except Exception as exc:  # our code cannot represent it: still chained, with the reason
        where = traceback.format_exc(limit=2).splitlines()[-1]
        return undecodable_draft(rec, position, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc} | {where}",
                                 decoded.schema_id)


def undecodable_draft(rec: SourceRecord, position: Position, reason_code: str, reason: str,
                      schema_id: int | None = None) -> Draft:
    payload = {**_common(rec), "undecodable": {"reason_code": reason_code, "reason": reason, "schema_id": schema_id},
               "value": rec.value}
    return Draft(chain_of(rec.partition), UNDECODABLE, canonical_json(payload), _text(rec.key), rec.timestamp_ms,
                 None, position, position.ref)


def _common(rec: SourceRecord) -> dict[str, Any]:
    key = _text(rec.key)
    return {"key": key if key is not None or rec.key is None else rec.key,
            "kafka_timestamp_ms": rec.timestamp_ms,
            "record_sha256": hashlib.sha256(rec.value).hexdigest() if rec.value is not None else None}


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
