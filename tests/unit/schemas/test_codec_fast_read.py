"""``AvroCodec.decode`` reads bodies with fastavro's record reader directly (no per-call schema
set-up). It must give exactly what the public ``fastavro.schemaless_reader`` gives, for every
schema of the catalog, in both time representations, including resolution of older versions."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import codec as codec_mod
from schemas.catalog import SchemaEntry
from schemas.codec import AvroCodec
from tests.unit.schemas.test_codec_roundtrip import CATALOG, ENTRIES, _frame_with, _ids, avro_values, fuzz


def public_decode(data: bytes, entry: SchemaEntry, epoch_ms: bool) -> object:
    reader = CATALOG.latest(entry.name)
    w = entry.parsed_ms if epoch_ms else entry.parsed
    r = None if reader.id == entry.id else (reader.parsed_ms if epoch_ms else reader.parsed)
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), w, r)


def test_the_fast_reader_is_in_use() -> None:
    assert codec_mod._fastavro_read_data is not None, "fastavro moved _read_data: AvroCodec is on the slow path"


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
@fuzz
@given(data=st.data())
def test_decode_equals_the_public_reader(entry: SchemaEntry, data: st.DataObject) -> None:
    value = data.draw(avro_values(entry.raw))
    framed = _frame_with(entry, value)
    for epoch_ms in (False, True):
        got = AvroCodec(epoch_ms=epoch_ms).decode(framed)
        assert got.value == public_decode(framed, entry, epoch_ms)
        assert got.schema_id == entry.id


def test_a_plan_is_built_once_per_schema_id() -> None:
    c = AvroCodec(epoch_ms=True)
    entry = CATALOG.latest("PaymentConfirmed")
    value = {"event_id": "e", "order_id": "o", "version": 2, "event_time": 5, "producer": "p",
             "payment_id": "pay", "amount_cents": 10, "method": "WECHAT_PAY"}
    framed = c.encode("PaymentConfirmed", value)
    c.decode(framed)
    plan = c._plans[entry.id]
    assert c.decode(framed).value == value
    assert c._plans[entry.id] is plan
