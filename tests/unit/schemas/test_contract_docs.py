"""The contract docs cannot rot: the generated ones equal what the schemas render to,
and every topic, record type and dead-letter reason code is documented somewhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from projections.order_events import InvalidEvent
from projections.order_status import IllegalTransition
from schemas import errors
from schemas.catalog import CommittedCatalog
from schemas.codec import AvroCodec
from schemas.contract_docs import DOCS_DIR, GENERATED, human_ms, main, render_schemas, render_topics
from schemas.topics import ALL_TOPICS, DAY_MS

REGENERATE = "stale: run `python -m schemas.contract_docs --write` and commit docs/"

CATALOG = CommittedCatalog.load()
ENTRIES = CATALOG.entries()

# Every reason code a dead letter can carry (streams/order_projector.py, streams/telemetry_projector.py,
# streams/resources.py, projections/order_state.py), plus the codes of the error classes.
REASON_CODES = {
    "NOT_AVRO_FRAMED", "UNKNOWN_SCHEMA_ID", "AVRO_DECODE_FAILED", "UNEXPECTED_RECORD_TYPE", "INVALID_EVENT",
    "ILLEGAL_TRANSITION", "VERSION_CONFLICT", "VERSION_GAP", "PROCESSING_ERROR",
}


def _read(name: str) -> str:
    path = DOCS_DIR / name
    assert path.exists(), f"{path} is missing: {REGENERATE}"
    return path.read_text("utf-8")


def test_topics_doc_is_the_rendered_contract():
    assert _read("topics.md") == render_topics(), f"docs/topics.md is {REGENERATE}"


def test_schemas_doc_is_the_rendered_contract():
    assert _read("schemas.md") == render_schemas(), f"docs/schemas.md is {REGENERATE}"


def test_generated_docs_say_so_and_render_the_same_twice():
    for name, render in (("topics.md", render_topics), ("schemas.md", render_schemas)):
        text = render()
        assert text.startswith(f"<!-- {GENERATED} -->\n"), name
        assert text == render(), f"{name} must not depend on the clock or on iteration order"


def test_every_topic_and_record_type_is_documented():
    everything = "\n".join(_read(name) for name in ("contracts.md", "topics.md", "schemas.md"))
    contracts, topics, schemas = _read("contracts.md"), render_topics(), render_schemas()
    for spec in ALL_TOPICS:
        assert spec.name in everything, spec.name
        assert f"`{spec.name}`" in contracts, f"docs/contracts.md does not mention {spec.name}"
        assert f"## `{spec.name}`" in topics, spec.name
    for entry in ENTRIES:
        assert entry.short_name in everything and entry.name in everything, entry.name
        assert f"### {entry.short_name}\n" in schemas, entry.name
        assert f"| {entry.id} | {entry.version}" in topics, f"schema id {entry.id} of {entry.name}"


def test_contracts_doc_explains_every_dead_letter_reason_code():
    contracts = _read("contracts.md")
    codes = REASON_CODES | {InvalidEvent.reason_code, IllegalTransition.reason_code} | {
        cls.reason_code for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.CodecError)
    }
    for code in sorted(codes):
        assert f"`{code}`" in contracts, f"docs/contracts.md does not explain {code}"
    for code in sorted(REASON_CODES):
        assert f"| `{code}` |" in contracts, f"docs/contracts.md has no row for {code} in its reason-code table"


def test_the_wire_format_example_in_contracts_md_decodes():
    contracts = _read("contracts.md")
    block = contracts.split("A `GpsPing` as the codec writes it", 1)[1].split("```", 2)[1]
    data = bytearray()
    for line in block.splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            data.append(int(token, 16))
    assert f"({len(data)} bytes)" in contracts
    decoded = AvroCodec().decode(bytes(data))
    assert (decoded.record_type, decoded.schema_id) == ("GpsPing", 101)
    assert decoded.value == {
        "event_id": "e-1", "driver_id": "DRV-001", "vehicle_id": "VAN-7",
        "event_time": datetime(2026, 6, 1, 6, 0, tzinfo=UTC), "producer": "driver-app/3.2",
        "lat": 39.9042, "lng": 116.4074, "speed_kmh": 32.5, "heading_deg": 90.0, "accuracy_m": None,
    }
    assert AvroCodec().encode("GpsPing", decoded.value) == bytes(data)


def _pii_fields_once(schema: Any, namespace: str, seen: set[str]) -> int:
    """Fields marked as PII, counting each named record once (as schemas.md renders them)."""
    if isinstance(schema, list):
        return sum(_pii_fields_once(branch, namespace, seen) for branch in schema)
    if not isinstance(schema, dict):
        return 0
    if schema["type"] == "record":
        name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', namespace)}.{schema['name']}"
        if name in seen:
            return 0
        seen.add(name)
        namespace = name.rsplit(".", 1)[0]
        return sum(("pii" in f) + _pii_fields_once(f["type"], namespace, seen) for f in schema["fields"])
    return sum(_pii_fields_once(schema[k], namespace, seen) for k in ("items", "values") if k in schema)


def test_schemas_doc_marks_every_pii_field():
    latest = {CATALOG.latest(e.name).id: CATALOG.latest(e.name) for e in ENTRIES}
    seen: set[str] = set()
    expected = sum(_pii_fields_once(e.raw, "", seen) for e in latest.values())
    assert expected > 0
    assert render_schemas().count("| **personal** |") == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("`array<OrderLine>`", "an array of named records"),
    ("`enum Unit {KG, PIECE}`", "an enum"),
    ("`null \\| string` (default null)", "an optional string"),
    ("`timestamp-millis`", "a logical type"),
    ("`map<string, timestamp-millis>`", "a map"),
    ("(unknown Category symbols read as OTHER)", "an enum default"),
    ("- version 1 (schema id 1): without `remark`;", "what an older version lacks"),
    ("- version 1 (schema id 8): with narrower types for `driver_name`, `driver_phone`", "a widened type"),
])
def test_types_are_rendered_readably(text: str, expected: str):
    assert text in render_schemas(), expected


def test_retention_is_in_human_units():
    assert human_ms("-1") == "forever"
    assert human_ms(str(7 * DAY_MS)) == "7 days"
    assert human_ms("3600000") == "1 hour"
    assert human_ms("1500") == "1500 ms"
    topics = render_topics()
    assert "kept forever" in topics and "deleted after 7 days" in topics and "deleted after 30 days" in topics
    assert "compacted (latest value per key kept)" in topics


def test_check_fails_on_stale_docs_and_write_fixes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--check", "--docs-dir", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().err

    assert main(["--write", "--docs-dir", str(tmp_path)]) == 0
    assert (tmp_path / "topics.md").read_text("utf-8") == render_topics()
    assert main(["--check", "--docs-dir", str(tmp_path)]) == 0

    schemas_md = tmp_path / "schemas.md"
    schemas_md.write_text(schemas_md.read_text("utf-8").replace("Ground speed.", "Ground speed!"), "utf-8")
    capsys.readouterr()
    assert main(["--check", "--docs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "schemas.md: stale (+1 -1 lines)" in err
    assert "-| `speed_kmh` | `float` |  | Ground speed! |" in err
