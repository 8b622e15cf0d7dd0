"""What every schema promises: envelopes, docs, PII marks, and a topic for each record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.catalog import CommittedCatalog, SchemaEntry
from schemas.topics import ALL_TOPICS, FLEET, GPS, ORDER_EVENTS, SENSORS, topic_for_record

CATALOG = CommittedCatalog.load()
ENTRIES = CATALOG.entries()
ORDER_EVENT_ENTRIES = [e for e in ENTRIES if e.short_name in ORDER_EVENTS.records]
TELEMETRY = [(e, spec.key) for spec in (GPS, SENSORS) for e in ENTRIES if e.short_name in spec.records]

TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
ENVELOPE = {"event_id": "string", "order_id": "string", "version": "int", "event_time": TIMESTAMP_MILLIS,
            "producer": "string"}

# Field paths (record.field[.nested]) holding personal data; nothing else may be marked.
PII_FIELDS = {
    "OrderCreated.customer_name", "OrderCreated.customer_phone", "OrderCreated.delivery_address.text",
    "OrderDispatched.driver_name", "OrderDispatched.driver_phone",
    "OrderDelivered.receiver_name",
    "OrderState.driver.name", "OrderState.driver.phone", "OrderState.signature.receiver_name",
}


def _ids(entries: list[SchemaEntry]) -> list[str]:
    return [f"{e.short_name}-v{e.version}" for e in entries]


def fields(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of every record inside ``schema``, with its dotted path."""
    if isinstance(schema, list):
        for branch in schema:
            yield from fields(branch, path)
    elif isinstance(schema, dict):
        if schema["type"] == "record":
            for field in schema["fields"]:
                field_path = f"{path}.{field['name']}"
                yield field_path, field
                yield from fields(field["type"], field_path)
        elif schema["type"] == "array":
            yield from fields(schema["items"], path)
        elif schema["type"] == "map":
            yield from fields(schema["values"], path)


def _by_name(entry: SchemaEntry) -> dict[str, Any]:
    return {f["name"]: f for f in entry.raw["fields"]}


@pytest.mark.parametrize("entry", ORDER_EVENT_ENTRIES, ids=_ids(ORDER_EVENT_ENTRIES))
def test_order_event_has_the_envelope(entry: SchemaEntry):
    declared = _by_name(entry)
    for name, avro_type in ENVELOPE.items():
        assert name in declared, f"{entry.name} has no {name}"
        assert declared[name]["type"] == avro_type, f"{entry.name}.{name}"


@pytest.mark.parametrize(("entry", "key"), TELEMETRY, ids=[e.short_name for e, _ in TELEMETRY])
def test_telemetry_has_id_key_time_and_producer(entry: SchemaEntry, key: str):
    declared = _by_name(entry)
    assert declared["event_id"]["type"] == "string"
    assert declared[key]["type"] == "string"
    assert declared["event_time"]["type"] == TIMESTAMP_MILLIS
    assert declared["producer"]["type"] == "string"


def test_every_order_and_telemetry_record_is_checked():
    assert {e.short_name for e in ORDER_EVENT_ENTRIES} == set(ORDER_EVENTS.records)
    assert {e.short_name for e, _ in TELEMETRY} == {"GpsPing", "SensorReading"}


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_every_field_has_a_doc(entry: SchemaEntry):
    undocumented = [path for path, field in fields(entry.raw, entry.short_name) if not field.get("doc")]
    assert undocumented == []


def test_pii_marks_are_exactly_the_personal_fields():
    marked: dict[str, Any] = {}
    for entry in ENTRIES:
        for path, field in fields(entry.raw, entry.short_name):
            if "pii" in field:
                marked[path] = field["pii"]
    assert set(marked) == PII_FIELDS
    assert set(marked.values()) == {"personal"}


def test_pii_marks_are_the_same_in_every_version():
    versions: dict[str, list[SchemaEntry]] = {}
    for entry in ENTRIES:
        versions.setdefault(entry.name, []).append(entry)
    for name, entries in versions.items():
        marks = [{path for path, f in fields(e.raw, e.short_name) if "pii" in f} for e in entries]
        assert all(m == marks[0] for m in marks), name
    assert len(versions["kuailv.events.OrderCreated"]) >= 3


def test_a_personal_field_of_the_newest_versions_is_plain_text_or_sealed():
    for entry in ENTRIES:
        if CATALOG.latest(entry.name) is not entry:
            continue
        for path, field in fields(entry.raw, entry.short_name):
            if "pii" in field:
                t = field["type"]
                assert isinstance(t, list) and t[0] == "string" and len(t) == 2, path
                sealed = t[1] if isinstance(t[1], str) else f"{t[1]['namespace']}.{t[1]['name']}"
                assert sealed == "kuailv.privacy.Sealed", path


def test_records_on_topics_and_records_in_the_catalog_are_the_same():
    on_topics = [record for spec in ALL_TOPICS for record in spec.records]
    # A record type has one home topic (the first that carries it); only the fleet repartition topic
    # carries another topic's type again (vehicle SensorReadings forwarded by the alert projection).
    again = [(spec.name, r) for spec in ALL_TOPICS for r in spec.records if topic_for_record(r) is not spec]
    assert again == [(FLEET.name, "SensorReading")]
    assert topic_for_record("SensorReading") is SENSORS
    assert set(on_topics) == {e.short_name for e in ENTRIES}
    for record in on_topics:
        assert CATALOG.latest(record).short_name == record
        assert record in topic_for_record(record).records


def test_topic_keys_are_fields_of_their_records():
    for spec in (ORDER_EVENTS, GPS, SENSORS):
        for record in spec.records:
            assert spec.key in _by_name(CATALOG.latest(record)), f"{record} has no key field {spec.key}"


def test_a_named_type_shared_by_several_files_has_one_definition():
    """Across the newest version of every record (an older version keeps the nested types it was written
    with: OrderCreated v2's DeliveryAddress holds a plain string where v3's may hold a sealed one)."""
    definitions: dict[str, set[str]] = {}

    def collect(schema: Any, namespace: str, top: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                collect(branch, namespace, top)
        elif isinstance(schema, dict):
            if schema["type"] in ("record", "enum", "fixed"):
                namespace = schema.get("namespace", namespace)
                name = f"{namespace}.{schema['name']}"
                if name != top:  # versions of the top-level record differ on purpose
                    definitions.setdefault(name, set()).add(json.dumps(schema, sort_keys=True))
            for field in schema.get("fields", []):
                collect(field["type"], namespace, top)
            for key in ("items", "values"):
                if key in schema:
                    collect(schema[key], namespace, top)

    for entry in ENTRIES:
        if CATALOG.latest(entry.name) is entry:
            collect(entry.raw, "", entry.name)
    assert {name for name, defs in definitions.items() if len(defs) > 1} == set()
    assert "kuailv.common.GeoPoint" in definitions and "kuailv.privacy.Sealed" in definitions
