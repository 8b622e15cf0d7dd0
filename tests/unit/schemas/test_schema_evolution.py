"""Schema ids and versions: old records keep decoding, the catalog stays consistent.

``catalog.json`` is read raw here, not through ``CommittedCatalog``, because the
loader keys entries by id and would hide a duplicate.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from importlib import resources
from itertools import combinations
from typing import Any

import fastavro
import pytest

from schemas.catalog import CommittedCatalog, SchemaEntry, full_name
from schemas.codec import AvroCodec
from schemas.errors import AvroDecodeFailed
from simulator.events import T0, order_created

AVRO_DIR = resources.files("schemas").joinpath("avro")
CATALOG_JSON = json.loads(AVRO_DIR.joinpath("catalog.json").read_text("utf-8"))
ITEMS = CATALOG_JSON["schemas"]

CATALOG = CommittedCatalog.load()
codec = AvroCodec()

_VERSIONS: dict[str, list[SchemaEntry]] = {}
for _entry in CATALOG.entries():
    _VERSIONS.setdefault(_entry.name, []).append(_entry)
VERSION_PAIRS = [
    (older, later)
    for entries in _VERSIONS.values()
    for older, later in combinations(sorted(entries, key=lambda e: e.version), 2)
]


def _frame(entry: SchemaEntry, value: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, entry.parsed, value)
    return b"\x00" + entry.id.to_bytes(4, "big") + buf.getvalue()


def sample(schema: Any, full: bool) -> Any:
    """One valid value of ``schema``: the smallest (``full=False``) or one with every optional part filled."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"] if full else schema
        return sample(branches[-1] if full else branches[0], full)
    if isinstance(schema, str):
        return {"null": None, "boolean": full, "int": 7 if full else 0, "long": 2**40 if full else 0,
                "float": 1.5 if full else 0.0, "double": 39.9042 if full else 0.0,
                "bytes": b"\x00\xff" if full else b"", "string": "有机菠菜" if full else ""}[schema]
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: sample(f["type"], full) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][-1 if full else 0]
    if kind == "array":
        return [sample(schema["items"], full), sample(schema["items"], full)] if full else []
    if kind == "map":
        return {"created": sample(schema["values"], full)} if full else {}
    if schema.get("logicalType") == "timestamp-millis":
        return datetime(2026, 6, 1, 6, 0, 0, 123000, tzinfo=UTC) if full else datetime(1970, 1, 1, tzinfo=UTC)
    return sample(kind, full)


# --- OrderCreated v1 -> v2 -------------------------------------------------------------

def test_order_created_v1_decodes_into_the_v2_shape():
    v1 = CATALOG.by_id(1)
    assert (v1.name, v1.version) == ("kuailv.events.OrderCreated", 1)
    assert AVRO_DIR.joinpath("events", "order_created.v1.avsc").read_text("utf-8")  # the old file stays
    _, current = order_created("KL20260601001")
    written_by_old_producer = {k: v for k, v in current.items() if k != "remark"}

    decoded = codec.decode(_frame(v1, written_by_old_producer))

    assert (decoded.record_type, decoded.schema_id) == ("OrderCreated", 1)
    assert list(decoded.value) == [f["name"] for f in CATALOG.latest("OrderCreated").raw["fields"]]
    assert decoded.value["remark"] is None
    assert decoded.value == codec.decode(codec.encode("OrderCreated", current)).value
    assert decoded.value["event_time"] == datetime.fromtimestamp(T0 / 1000, tz=UTC)


def test_order_created_v2_only_adds_an_optional_remark():
    v1, v2 = CATALOG.by_id(1).raw, CATALOG.by_id(2).raw
    assert CATALOG.by_id(2).version == 2
    assert v2["fields"][:-1] == v1["fields"]
    assert v2["fields"][-1]["name"] == "remark"
    assert v2["fields"][-1]["type"] == ["null", "string"]
    assert v2["fields"][-1]["default"] is None


def test_order_created_v1_json_form_reads_with_v2():
    _, current = order_created("KL20260601001")
    as_json = codec.to_avro_json("OrderCreated", current)
    del as_json["remark"]  # a replay file written before v2
    assert codec.from_avro_json("OrderCreated", as_json)["remark"] is None


# --- OrderEta v1 -> v2: the order's tracking record gains its stage times ------------------

ETA_V2_FIELDS = ["arrived_warehouse_at", "arrived_customer_at", "left_customer_at", "updated_at"]
ETA_V3_FIELDS = ["late_risk", "window_end"]
ETA_V1_RECORD = {"order_id": "KL20260601001", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "dispatch_count": 1,
                 "eta": T0 + 600_000, "computed_at": T0, "distance_m": 3200.5, "stops_before": 1, "speed_kmh": 24.2,
                 "estimator": "distance-speed/v1"}


def test_order_eta_v1_decodes_into_the_v2_shape():
    v1 = CATALOG.by_id(701)
    assert (v1.name, v1.version) == ("kuailv.etas.OrderEta", 1)
    assert AVRO_DIR.joinpath("etas", "order_eta.v1.avsc").read_text("utf-8")  # the old file stays

    decoded = AvroCodec(epoch_ms=True).decode(_frame(v1, ETA_V1_RECORD))

    assert (decoded.record_type, decoded.schema_id) == ("OrderEta", 701)
    assert list(decoded.value) == [f["name"] for f in CATALOG.latest("OrderEta").raw["fields"]]
    assert decoded.value == {**ETA_V1_RECORD, **dict.fromkeys(ETA_V2_FIELDS + ETA_V3_FIELDS)}


def test_order_eta_v2_only_adds_optional_timestamps():
    v1, v2 = CATALOG.by_id(701).raw, CATALOG.by_id(702).raw
    kept = v2["fields"][:len(v1["fields"])]
    assert [(f["name"], f["type"]) for f in kept] == [(f["name"], f["type"]) for f in v1["fields"]]
    added = v2["fields"][len(v1["fields"]):]
    assert [f["name"] for f in added] == ETA_V2_FIELDS
    assert all(f["type"] == ["null", {"type": "long", "logicalType": "timestamp-millis"}] for f in added)
    assert all(f["default"] is None and f["doc"] for f in added)


def test_order_eta_v1_json_form_reads_with_v3():
    as_json = codec.to_avro_json("OrderEta", {**ETA_V1_RECORD, **dict.fromkeys(ETA_V2_FIELDS + ETA_V3_FIELDS)})
    for name in ETA_V2_FIELDS + ETA_V3_FIELDS:
        del as_json[name]  # a replay file written before v2
    read = codec.from_avro_json("OrderEta", as_json)
    assert all(read[name] is None for name in ETA_V2_FIELDS + ETA_V3_FIELDS)


def test_order_eta_v3_only_adds_the_risk_and_the_window_it_is_judged_against():
    v2, v3 = CATALOG.by_id(702).raw, CATALOG.by_id(703).raw
    assert CATALOG.latest("OrderEta").id == 703
    assert v3["fields"][:len(v2["fields"])] == v2["fields"]
    added = v3["fields"][len(v2["fields"]):]
    assert [f["name"] for f in added] == ETA_V3_FIELDS
    assert [f["type"] for f in added] == [["null", "double"],
                                          ["null", {"type": "long", "logicalType": "timestamp-millis"}]]
    assert all(f["default"] is None and f["doc"] for f in added)


# --- personal fields become "plain text or sealed" (issue 9) -----------------------------

SEALING_VERSIONS = [(2, 17, "OrderCreated"), (8, 18, "OrderDispatched"), (9, 19, "OrderDelivered"),
                    (201, 202, "OrderState")]


def _personal_paths(raw: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for f in raw["fields"]:
        if f.get("pii"):
            out.add(prefix + f["name"])
        for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(branch, dict) and branch.get("type") == "record":
                out |= _personal_paths(branch, f"{prefix}{f['name']}.")
    return out


def _strip_personal(raw: Any) -> Any:
    """The schema with each personal field's type and doc blanked: what must not change between the versions."""
    if isinstance(raw, list):
        return [_strip_personal(b) for b in raw]
    if isinstance(raw, dict):
        if raw.get("pii"):
            return {k: v for k, v in raw.items() if k not in ("type", "doc")}
        return {k: _strip_personal(v) for k, v in raw.items() if k != "doc"}
    return raw


@pytest.mark.parametrize(("old_id", "new_id", "name"), SEALING_VERSIONS, ids=[n for *_, n in SEALING_VERSIONS])
def test_the_sealing_version_only_widens_the_personal_fields(old_id: int, new_id: int, name: str):
    old, new = CATALOG.by_id(old_id), CATALOG.by_id(new_id)
    assert (old.short_name, new.short_name) == (name, name) and new.version == old.version + 1
    assert CATALOG.latest(name) is new
    assert _strip_personal(new.raw) == _strip_personal(old.raw)
    assert _personal_paths(new.raw) == _personal_paths(old.raw) != set()


def _sealed_value(label: str) -> dict[str, Any]:
    from privacy.sealed import seal

    return seal("王经理", key=bytes(32), key_id="customer:CUST-0001", key_version=1, label=label)


def test_an_old_plain_text_record_and_a_new_sealed_one_both_decode_with_the_newest_reader():
    _, plain = order_created("KL20260601001")
    old = codec.decode(_frame(CATALOG.by_id(2), plain))  # a v2 producer: plain text
    assert (old.schema_id, old.value["customer_name"]) == (2, "王经理")
    sealed = {**plain, "customer_name": _sealed_value("customer.name"), "customer_phone": "13812345678",
              "delivery_address": {**plain["delivery_address"], "text": _sealed_value("customer.address")}}
    new = codec.decode(codec.encode("OrderCreated", sealed))
    assert new.schema_id == 17
    assert new.value["customer_name"] == sealed["customer_name"]
    assert new.value["delivery_address"]["text"] == sealed["delivery_address"]["text"]
    assert new.value["customer_phone"] == "13812345678"  # a v3 record may still carry plain text
    assert codec.decode(codec.encode("OrderCreated", plain)).value == old.value


def test_an_order_state_v1_record_decodes_into_v2():
    from projections.order_state import fold_all
    from simulator.events import order_story

    view = fold_all(order_story("KL-V1", ending="signed"))[0]["KL-V1"]["view"]
    ms_codec = AvroCodec(epoch_ms=True)
    v1 = CATALOG.by_id(201)
    decoded = ms_codec.decode(_frame(v1, view))  # a worker still on v1
    assert (decoded.schema_id, decoded.value) == (201, view)
    sealed = {**view, "driver": {**view["driver"], "name": _sealed_value("driver.name")}}
    assert ms_codec.decode(ms_codec.encode("OrderState", sealed)).value == sealed


def test_a_sealed_record_in_avro_json_form_reads_back():
    _, plain = order_created("KL20260601001")
    sealed = {**plain, "customer_name": _sealed_value("customer.name")}
    as_json = codec.to_avro_json("OrderCreated", sealed)
    assert as_json["customer_name"] == {"kuailv.privacy.Sealed": sealed["customer_name"]}
    assert as_json["customer_phone"] == {"string": "13812345678"}
    assert codec.from_avro_json("OrderCreated", as_json)["customer_name"] == sealed["customer_name"]


def test_a_json_line_exported_before_sealing_still_reads():
    """Before v3 a personal field's Avro JSON was a bare string; now it is a union branch ({"string": ...})."""
    _, plain = order_created("KL20260601001")
    out = io.StringIO()
    fastavro.json_writer(out, CATALOG.by_id(2).parsed, [plain])  # what `kuailv export` wrote with v2
    old_line = json.loads(out.getvalue())
    assert old_line["customer_name"] == "王经理" and old_line["delivery_address"]["text"].startswith("北京")
    read = codec.from_avro_json("OrderCreated", old_line)
    assert read == codec.decode(codec.encode("OrderCreated", plain)).value
    with pytest.raises(AvroDecodeFailed, match=r"JSON is not a valid kuailv\.events\.OrderCreated"):
        codec.from_avro_json("OrderCreated", {**old_line, "customer_name": 5})


# --- every later version reads every earlier one --------------------------------------

def test_there_is_a_version_pair_to_check():
    pairs = [(o.id, later.id) for o, later in VERSION_PAIRS]
    assert (1, 2) in pairs and (701, 702) in pairs


@pytest.mark.parametrize(("older", "later"), VERSION_PAIRS,
                         ids=[f"{o.short_name}-v{o.version}-read-by-v{n.version}" for o, n in VERSION_PAIRS])
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_later_version_reads_records_of_an_earlier_one(older: SchemaEntry, later: SchemaEntry, full: bool):
    value = sample(older.raw, full)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, older.parsed, value)
    buf.seek(0)

    read = fastavro.schemaless_reader(buf, older.parsed, later.parsed)

    old_fields = {f["name"] for f in older.raw["fields"]}
    for field in later.raw["fields"]:
        expected = value[field["name"]] if field["name"] in old_fields else field["default"]
        assert read[field["name"]] == expected, field["name"]


@pytest.mark.parametrize(("older", "later"), VERSION_PAIRS,
                         ids=[f"{o.short_name}-v{o.version}-v{n.version}" for o, n in VERSION_PAIRS])
def test_fields_added_by_a_later_version_have_defaults(older: SchemaEntry, later: SchemaEntry):
    old_fields = {f["name"] for f in older.raw["fields"]}
    added = [f for f in later.raw["fields"] if f["name"] not in old_fields]
    assert all("default" in f for f in added), [f["name"] for f in added if "default" not in f]


# --- the catalog itself ----------------------------------------------------------------

def test_schema_ids_are_unique():
    ids = [item["id"] for item in ITEMS]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and 0 < i < 2**31 for i in ids)


def test_versions_of_a_name_are_unique_and_start_at_one():
    versions: dict[str, list[int]] = {}
    for item in ITEMS:
        versions.setdefault(item["name"], []).append(item["version"])
    for name, numbers in versions.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), name


def test_files_are_unique_and_every_avsc_file_is_in_the_catalog():
    listed = [item["file"] for item in ITEMS]
    assert len(listed) == len(set(listed))
    on_disk = sorted(
        f"{folder.name}/{f.name}"
        for folder in AVRO_DIR.iterdir() if folder.is_dir()
        for f in folder.iterdir() if f.name.endswith(".avsc")
    )
    assert sorted(listed) == on_disk


@pytest.mark.parametrize("item", ITEMS, ids=[f"{i['id']}-{i['file']}" for i in ITEMS])
def test_every_file_parses_and_holds_the_named_record(item: dict[str, Any]):
    raw = json.loads(AVRO_DIR.joinpath(item["file"]).read_text("utf-8"))
    fastavro.parse_schema(raw, _write_hint=False)
    assert raw["type"] == "record"
    assert full_name(raw) == item["name"]
    entry = CATALOG.by_id(item["id"])
    assert (entry.name, entry.version, entry.raw) == (item["name"], item["version"], raw)


def test_latest_is_the_highest_version_by_full_and_short_name():
    for name, entries in _VERSIONS.items():
        newest = max(entries, key=lambda e: e.version)
        assert CATALOG.latest(name) is newest
        assert CATALOG.latest(newest.short_name) is newest
