"""Every schema in the committed catalog round-trips through the codec.

Records are generated from the parsed JSON schema itself (``avro_values``), so
a new schema or field is covered without touching this file.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import CommittedCatalog, SchemaEntry
from schemas.codec import AvroCodec, read_header
from schemas.errors import EncodeFailed

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
CHINESE = "有机菠菜五花肉鲜牛奶王经理张三李厨师北京市东城区东长安街川味小馆追尾事故菜叶发黄客户拒收"

CATALOG = CommittedCatalog.load()
ENTRIES = CATALOG.entries()
LATEST = [e for e in ENTRIES if CATALOG.latest(e.name).id == e.id]
OLDER = [e for e in ENTRIES if CATALOG.latest(e.name).id != e.id]


def _ids(entries: list[SchemaEntry]) -> list[str]:
    return [f"{e.id}-{e.short_name}-v{e.version}" for e in entries]


# --- a hypothesis strategy for any value of an Avro schema ---------------------------

texts = st.one_of(st.text(max_size=12), st.text(alphabet=CHINESE, max_size=12))
# Map keys are never empty here: fastavro's JSON encoder drops an empty key (see the test at the end).
map_keys = texts.filter(bool)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Aware UTC datetimes with millisecond precision, over the whole datetime range.
timestamps_millis = st.integers(
    min_value=(datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1),
    max_value=(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1),
).map(lambda n: _EPOCH + timedelta(milliseconds=n))

_PRIMITIVE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=16),
    "string": texts,
}


def avro_values(schema: Any, namespace: str = "", named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (a JSON Avro schema, as in the .avsc file)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return _PRIMITIVE_STRATEGIES[schema]
        full = schema if "." in schema else f"{namespace}.{schema}".lstrip(".")
        return st.deferred(lambda: avro_values(named[full], namespace, named))
    if isinstance(schema, list):
        return st.one_of([avro_values(branch, namespace, named) for branch in schema])
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        namespace = schema.get("namespace", namespace)
        named[f"{namespace}.{schema['name']}".lstrip(".")] = schema
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: avro_values(f["type"], namespace, named) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], namespace, named), max_size=3)
    if kind == "map":
        return st.dictionaries(map_keys, avro_values(schema["values"], namespace, named), max_size=3)
    if schema.get("logicalType") == "timestamp-millis":
        assert kind == "long"
        return timestamps_millis
    assert "logicalType" not in schema, f"no generator for logical type {schema['logicalType']}"
    return avro_values(kind, namespace, named)


# --- helpers ---------------------------------------------------------------------------

def _header(schema_id: int) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big")


def _frame_with(entry: SchemaEntry, value: dict[str, Any]) -> bytes:
    """What a producer still on ``entry`` (possibly an old version) puts on the wire."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, entry.parsed, value)
    return _header(entry.id) + buf.getvalue()


def _reads_unchanged(old: Any, new: Any) -> bool:
    """Values of type ``old`` decode unchanged with type ``new``: the same type, a union holding ``old`` (a personal
    field's ``string`` -> ``["string", kuailv.privacy.Sealed]``), or records and unions made of such parts."""
    if old == new:
        return True
    if isinstance(old, list):
        return isinstance(new, list) and all(any(_reads_unchanged(o, n) for n in new) for o in old)
    if isinstance(new, list):
        return any(_reads_unchanged(old, n) for n in new)
    if isinstance(old, dict) and isinstance(new, dict) and old.get("type") == new.get("type") == "record":
        pairs = list(zip(old["fields"], new["fields"], strict=False))
        return (old["name"] == new["name"] and len(old["fields"]) == len(new["fields"])
                and all(o["name"] == n["name"] and _reads_unchanged(o["type"], n["type"]) for o, n in pairs))
    return False


def _as_latest(entry: SchemaEntry, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` written with ``entry`` as the latest version reads it: added fields take their defaults."""
    latest = CATALOG.latest(entry.name)
    old_fields = {f["name"]: f for f in entry.raw["fields"]}
    out = {}
    for field in latest.raw["fields"]:
        if field["name"] in old_fields:
            assert _reads_unchanged(old_fields[field["name"]]["type"], field["type"]), \
                "a changed field type needs its own expectation"
            out[field["name"]] = value[field["name"]]
        else:
            out[field["name"]] = field["default"]
    return out


codec = AvroCodec()
fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- tests -----------------------------------------------------------------------------

def test_the_catalog_has_an_older_version_to_resolve():
    assert (1, "kuailv.events.OrderCreated") in [(e.id, e.name) for e in OLDER]


@pytest.mark.parametrize("entry", LATEST, ids=_ids(LATEST))
@fuzz
@given(data=st.data())
def test_latest_version_round_trips_through_the_binary_codec(entry: SchemaEntry, data: st.DataObject):
    value = data.draw(avro_values(entry.raw), label=entry.short_name)

    framed = codec.encode(entry.short_name, value)

    assert framed[:5] == _header(entry.id)
    assert struct.unpack(">bI", framed[:5]) == (0, entry.id)
    assert read_header(framed) == entry.id
    decoded = codec.decode(framed)
    assert (decoded.record_type, decoded.schema_id) == (entry.short_name, entry.id)
    assert decoded.value == value


@pytest.mark.parametrize("entry", LATEST, ids=_ids(LATEST))
@fuzz
@given(data=st.data())
def test_full_name_and_short_name_encode_the_same_bytes(entry: SchemaEntry, data: st.DataObject):
    value = data.draw(avro_values(entry.raw), label=entry.short_name)
    assert codec.encode(entry.name, value) == codec.encode(entry.short_name, value)


@pytest.mark.parametrize("entry", OLDER, ids=_ids(OLDER))
@fuzz
@given(data=st.data())
def test_older_version_decodes_into_the_latest_shape(entry: SchemaEntry, data: st.DataObject):
    value = data.draw(avro_values(entry.raw), label=f"{entry.short_name} v{entry.version}")

    framed = _frame_with(entry, value)

    assert read_header(framed) == entry.id
    decoded = codec.decode(framed)
    assert (decoded.record_type, decoded.schema_id) == (entry.short_name, entry.id)
    assert decoded.value == _as_latest(entry, value)


@pytest.mark.parametrize("entry", LATEST, ids=_ids(LATEST))
@fuzz
@given(data=st.data())
def test_avro_json_form_round_trips(entry: SchemaEntry, data: st.DataObject):
    value = data.draw(avro_values(entry.raw), label=entry.short_name)

    as_json = codec.to_avro_json(entry.short_name, value)

    # The JSON form survives a trip through text, as in a replay file.
    text = json.dumps(as_json, ensure_ascii=False)
    assert codec.from_avro_json(entry.short_name, json.loads(text)) == value


def test_timestamps_encode_as_epoch_millis_and_decode_as_aware_utc():
    instant = datetime(2026, 6, 1, 6, 0, 0, 123000, tzinfo=UTC)
    record = {"event_id": "e-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": instant,
              "producer": "driver-app/3.2", "lat": 39.9042, "lng": 116.4074, "speed_kmh": 32.5,
              "heading_deg": 90.0, "accuracy_m": None}

    from_datetime = codec.encode("GpsPing", record)
    from_int = codec.encode("GpsPing", {**record, "event_time": 1_780_293_600_123})

    assert from_datetime == from_int
    decoded = codec.decode(from_int).value["event_time"]
    assert decoded == instant
    assert decoded.utcoffset() == timedelta(0)


def test_avro_json_names_union_branches():
    record = {"event_id": "e-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001",
              "event_time": datetime(2026, 6, 1, 6, 0, tzinfo=UTC), "producer": "driver-app/3.2",
              "lat": 39.9042, "lng": 116.4074, "speed_kmh": 32.5, "heading_deg": 90.0, "accuracy_m": 4.5}

    as_json = codec.to_avro_json("GpsPing", record)

    assert as_json["accuracy_m"] == {"float": 4.5}
    assert as_json["event_time"] == 1_780_293_600_000
    assert codec.to_avro_json("GpsPing", {**record, "accuracy_m": None})["accuracy_m"] is None


def _state_with_stages(stages: dict[str, Any]) -> dict[str, Any]:
    value = {f["name"]: None for f in CATALOG.latest("OrderState").raw["fields"]}
    instant = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    value.update(order_id="KL1", customer_id="CUST-0001", warehouse_id="WH-BJ-CY-01", status="CREATED", version=1,
                 updated_at=instant, stages=stages, lines=[], short_lines=[], delivery_window_start=instant,
                 delivery_window_end=instant, destination={"lat": 39.9042, "lng": 116.4074}, dispatch_count=0,
                 total_cents=0, rejected_events=0)
    return value


def test_an_empty_map_key_round_trips_in_binary():
    value = _state_with_stages({"": datetime(2026, 6, 1, 6, 0, tzinfo=UTC)})
    assert codec.decode(codec.encode("OrderState", value)).value == value


def test_an_empty_map_key_is_refused_clearly_in_avro_json():
    # Known fastavro 1.13.1 bug: AvroJSONEncoder.write_value tests ``if self._key:``, so the
    # valid key "" raises "No key was set". Stage names are never empty, so we only require
    # a clear EncodeFailed (not a crash). When fastavro fixes it this test fails: then assert
    # the round trip instead.
    value = _state_with_stages({"": datetime(2026, 6, 1, 6, 0, tzinfo=UTC)})
    with pytest.raises(EncodeFailed, match="No key was set"):
        codec.to_avro_json("OrderState", value)
