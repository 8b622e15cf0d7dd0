"""The incremental encoder writes exactly fastavro's bytes: for generated records of every latest
schema (full encodes), for every view of simulated orders encoded after its predecessor (the
reuse path), and it falls back to the general encoder for values it does not handle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy.sealed import is_sealed, seal
from projections.order_state import fold, fold_all
from schemas.catalog import SchemaEntry, without_timestamp_types
from schemas.codec import AvroCodec
from schemas.errors import EncodeFailed
from schemas.fieldwise_encoder import FieldwiseEncoder, encode_long, encode_string
from simulator.events import order_story
from tests.unit.privacy.sealed_logs import sealed_log
from tests.unit.schemas.test_codec_roundtrip import LATEST, _ids, avro_values, fuzz

CODEC = AvroCodec(epoch_ms=True)


@pytest.mark.parametrize("entry", LATEST, ids=_ids(LATEST))
@fuzz
@given(data=st.data())
def test_full_encodes_are_fastavros_bytes(entry: SchemaEntry, data: st.DataObject) -> None:
    value = data.draw(avro_values(without_timestamp_types(entry.raw)))  # timestamps as epoch ms
    enc = FieldwiseEncoder(CODEC, entry.short_name)
    assert enc.encode(value).data == CODEC.encode(entry.short_name, value)


@pytest.mark.parametrize("entry", [e for e in LATEST if e.short_name in ("OrderState", "DeadLetter", "GpsPing")],
                         ids=lambda e: e.short_name)
@fuzz
@given(data=st.data())
def test_an_encode_after_any_other_value_is_fastavros_bytes(entry: SchemaEntry, data: st.DataObject) -> None:
    values = avro_values(without_timestamp_types(entry.raw))
    first, second = data.draw(values), data.draw(values)
    enc = FieldwiseEncoder(CODEC, entry.short_name)
    assert enc.encode(second, enc.encode(first)).data == CODEC.encode(entry.short_name, second)


@pytest.mark.parametrize("ending", ["signed", "redispatched", "refused", "cancelled", "out_of_stock"])
def test_each_view_of_a_story_encoded_from_the_previous_one_is_fastavros_bytes(ending: str) -> None:
    enc = FieldwiseEncoder(CODEC, "OrderState")
    state, memo, n = None, None, 0
    for event_type, event in order_story(f"KLFW-{ending}", ending=ending):
        state = fold(state, event_type, event).state
        memo = enc.encode(state["view"], memo)
        assert memo.data == CODEC.encode("OrderState", state["view"])
        n += 1
    assert n >= 3


@pytest.mark.parametrize("ending", ["signed", "redispatched", "refused"])
def test_views_with_sealed_personal_fields_are_fastavros_bytes_without_falling_back(ending: str) -> None:
    """OrderState v2: a personal field is ``string | Sealed``; the encoder writes either branch itself."""
    enc = FieldwiseEncoder(CODEC, "OrderState")
    state, memo, sealed_views = None, None, 0
    for event_type, event in sealed_log(order_story(f"KLFW-S-{ending}", ending=ending)):
        state = fold(state, event_type, event).state
        memo = enc.encode(state["view"], memo)
        assert memo.data == CODEC.encode("OrderState", state["view"])
        assert memo.parts, "fell back to the whole-record encoder"
        sealed_views += state["view"]["driver"] is not None and is_sealed(state["view"]["driver"]["name"])
    assert sealed_views >= 2


def test_a_view_mixing_plain_and_sealed_values_and_a_bad_sealed_value() -> None:
    enc = FieldwiseEncoder(CODEC, "OrderState")
    view = fold_all(order_story("KLFW-M"))[0]["KLFW-M"]["view"]
    sealed_name = seal("张三", key=bytes(32), key_id="driver:DRV-001", key_version=1, label="driver.name")
    mixed = {**view, "driver": {**view["driver"], "name": sealed_name}}  # the phone stays plain text
    assert enc.encode(mixed, enc.encode(view)).data == CODEC.encode("OrderState", mixed)
    broken = {**mixed, "driver": {**mixed["driver"], "name": {"key_id": "driver:DRV-001"}}}
    with pytest.raises(EncodeFailed):
        enc.encode(broken)


def test_unsupported_values_fall_back_to_the_general_encoder_and_its_errors() -> None:
    enc = FieldwiseEncoder(CODEC, "GpsPing")
    ping = {"event_id": "e", "driver_id": "D", "vehicle_id": "V", "event_time": datetime(2026, 6, 1, tzinfo=UTC),
            "producer": "p", "lat": 39.9, "lng": 116.4, "speed_kmh": 1.0, "heading_deg": 2.0, "accuracy_m": None}
    assert enc.encode(ping).data == CODEC.encode("GpsPing", ping)  # a datetime: the general encoder
    with pytest.raises(EncodeFailed):
        enc.encode({**ping, "unknown": 1})
    with pytest.raises(EncodeFailed):
        enc.encode({**ping, "lat": "north"})


def test_primitive_writers_follow_the_avro_spec() -> None:
    assert [encode_long(n) for n in (0, -1, 1, -64, 64)] == [b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01"]
    assert encode_long(2**63 - 1) == b"\xfe" + b"\xff" * 8 + b"\x01"
    assert encode_long(-(2**63)) == b"\xff" * 9 + b"\x01"
    assert encode_string("菠菜") == b"\x0c" + "菠菜".encode()
