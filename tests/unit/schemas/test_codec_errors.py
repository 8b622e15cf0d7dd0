"""Bad bytes and bad records fail with the right CodecError, never anything else.

Dead letters record ``reason_code`` and ``schema_id``: both are part of the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.kpi_step import order_outputs
from projections.kpis import figures, order_facts
from projections.order_state import fold_all
from schemas.catalog import CommittedCatalog
from schemas.codec import AvroCodec, Decoded
from schemas.errors import (
    AvroDecodeFailed,
    CodecError,
    EncodeFailed,
    NotAvroFramed,
    UnknownRecordType,
    UnknownSchemaId,
)
from simulator.events import MINUTE, T0, order_story

CATALOG = CommittedCatalog.load()
KNOWN_IDS = sorted(e.id for e in CATALOG.entries())
codec = AvroCodec()


def _envelope(version: int) -> dict[str, Any]:
    return {"event_id": f"evt-{version}", "order_id": "KL20260601001", "version": version,
            "event_time": T0 + version * MINUTE, "producer": "order-service"}


# One valid record of every latest record type: the story events, the state they fold to,
# and the records no story reaches.
SAMPLES: dict[str, dict[str, Any]] = {}
for _ending in ("redispatched", "refused", "cancelled"):
    for _type, _record in order_story("KL20260601001", ending=_ending):
        SAMPLES.setdefault(_type, _record)
SAMPLES["OrderState"] = fold_all(order_story("KL20260601001", ending="redispatched"))[0]["KL20260601001"]["view"]
SAMPLES |= {
    "ReturnStarted": {**_envelope(11), "reason": "退货", "lines": [{"line_no": 1, "quantity": 1.5}]},
    "ReturnCompleted": {**_envelope(12), "warehouse_id": "WH-BJ-CY-01", "restocked": True},
    "DamageClaimOpened": {**_envelope(11), "claim_id": "CLM-1", "description": "牛奶破损",
                          "lines": [{"line_no": 3, "quantity": 2.0}], "claimed_cents": 2700},
    "DamageClaimSettled": {**_envelope(12), "claim_id": "CLM-1", "settled_cents": 2700, "resolution": "REFUND"},
    "GpsPing": {"event_id": "gps-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": T0,
                "producer": "driver-app/3.2", "lat": 39.93, "lng": 116.45, "speed_kmh": 32.5,
                "heading_deg": 270.0, "accuracy_m": 5.0},
    "SensorReading": {"event_id": "sen-1", "device_id": "SEN-VAN-001-A", "vehicle_id": "VAN-001",
                      "warehouse_id": None, "compartment": "CHILLED", "event_time": T0, "producer": "sensor-gateway",
                      "temperature_c": 3.2, "humidity_pct": 85.0},
    "RoadConditions": {"event_id": "rc-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": T0,
                       "producer": "driver-app/3.2+amap-traffic", "traffic_index": 1.6, "rain_mm_h": 2.5,
                       "temperature_c": 11.0},
    "DeadLetter": {"source_topic": "kuailv.order-events.v1", "source_partition": 2, "source_offset": 41,
                   "source_timestamp": T0, "key": b"KL20260601001", "value": b"\x01garbage",
                   "reason_code": "NOT_AVRO_FRAMED", "reason": "magic byte is 1, expected 0", "event_id": None,
                   "record_type": None, "schema_id": None, "consumer": "order-state-agent", "failed_at": T0},
    "Alert": {"alert_id": "late-delivery/order/KL20260601001", "rule_id": "late-delivery", "rule_version": 1,
              "severity": "CRITICAL", "status": "OPEN", "order_id": "KL20260601001", "driver_id": "DRV-001",
              "vehicle_id": "VAN-001", "warehouse_id": "WH-BJ-CY-01", "customer_id": "C-1", "opened_at": T0,
              "updated_at": T0, "resolved_at": None, "occurrences": 1, "message": "not signed 30 min after window",
              "evidence": {"window_end": str(T0)}, "location": {"lat": 39.93, "lng": 116.45},
              "audience": ["OPERATOR", "CUSTOMER_SERVICE", "CUSTOMER"]},
    "GeofenceTransition": {"transition_id": "DRV-001/WH-BJ-CY-01/ENTER/1", "driver_id": "DRV-001",
                           "vehicle_id": "VAN-001", "fence_id": "WH-BJ-CY-01", "fence_kind": "WAREHOUSE",
                           "fence_version": "2026-11-29.1", "order_id": None, "warehouse_id": "WH-BJ-CY-01",
                           "kind": "ENTER", "at": T0, "lat": 39.96, "lng": 116.49, "entered_at": None,
                           "ping_event_id": "gps-1"},
    "OrderEta": {"order_id": "KL20260601001", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "dispatch_count": 1,
                 "eta": T0 + 600_000, "computed_at": T0, "distance_m": 3200.5, "stops_before": 1, "speed_kmh": 24.2,
                 "estimator": "distance-speed/v1", "arrived_warehouse_at": T0 - 1_800_000, "arrived_customer_at": None,
                 "left_customer_at": None, "late_risk": 0.83, "window_end": T0 + 300_000, "updated_at": T0},
    "VanOrder": {"driver_id": "DRV-001", "vehicle_id": "VAN-001", "order_id": "KL20260601001", "order_version": 7,
                 "customer_id": "C-1", "warehouse_id": "WH-BJ-CY-01", "state": "ON_BOARD",
                 "destination": {"lat": 39.93, "lng": 116.45}, "window_start": T0, "window_end": T0 + 3600_000,
                 "dispatch_count": 1, "weight_kg": 42.5, "event_time": T0},
    "DriverStatus": {"driver_id": "DRV-002", "vehicle_id": "VAN-002", "lat": 39.95, "lng": 116.40, "at": T0,
                     "load_kg": 120.5, "orders_on_board": ["KL20260601002"], "stop_order": ["KL20260601002"]},
    "RedispatchRequest": {"request_id": "KL20260601001#1", "order_id": "KL20260601001", "from_driver_id": "DRV-001",
                          "from_vehicle_id": "VAN-001", "dispatch_count": 1, "reason_code": "TRAFFIC_ACCIDENT",
                          "incident": {"lat": 39.92, "lng": 116.43}, "destination": {"lat": 39.93, "lng": 116.45},
                          "weight_kg": 42.5, "customer_id": "C-1", "warehouse_id": "WH-BJ-CY-01", "requested_at": T0},
    "RedispatchSuggestion": {"suggestion_id": "KL20260601001#1", "order_id": "KL20260601001", "dispatch_count": 1,
                             "from_driver_id": "DRV-001", "reason_code": "TRAFFIC_ACCIDENT", "to_driver_id": "DRV-002",
                             "to_vehicle_id": "VAN-002", "distance_m": 3100.0, "eta": T0 + 1800_000,
                             "decided_at": T0, "reason": "nearest eligible driver", "considered": 2,
                             "excluded": {"DRV-001": "reporting driver"}, "estimator": "distance-speed/v1"},
    "WebhookDeadLetter": {
        "delivery_id": "msg_abcdefghijklmnopqrstuvwxyz", "subscription_id": "sub_0123456789abcdef01234567",
        "url": "https://example.com/hooks", "event_type": "order.changed", "order_key": "KL20260601001",
        "source_topic": "kuailv.order-state.v1", "source_partition": 3, "source_offset": 17, "attempts": 17,
        "first_attempt_at": T0, "last_attempt_at": T0 + 86_000_000, "last_status": 503,
        "last_error": "HTTP 503: Service Unavailable", "reason_code": "RETRIES_EXHAUSTED",
        "reason": "17 attempts failed", "body": "{}", "consumer": "kuailv-projector@host/webhooks",
        "failed_at": T0 + 86_000_000},
}
# KPI records as the projections compute them from the sample view (projections.kpi_step, projections.kpis)
SAMPLES["KpiExposure"] = {"order_id": "KL20260601001", "alert_id": "cold-chain-exposure/vehicle/VAN-001/CHILLED/trip-1",
                          "vehicle_id": "VAN-001", "exposed_at": T0}
_kpi_state = {"facts": order_facts(SAMPLES["OrderState"]), "exposures": {SAMPLES["KpiExposure"]["alert_id"]: T0},
              "keys": [], "sent": None}
SAMPLES["KpiContribution"] = order_outputs(None, _kpi_state)[0][1]
SAMPLES["KpiFigures"] = figures(SAMPLES["KpiContribution"]["window_key"],
                                {"KL20260601001": SAMPLES["KpiContribution"]})
SAMPLES["StockMovement"] = {"event_id": "PICK-KL20260601001-1", "warehouse_id": "WH-BJ-CY-01", "sku": "VEG-POTATO",
                            "kind": "PICK", "quantity": 12.5, "unit": "KG", "order_id": "KL20260601001", "line_no": 1,
                            "reference": None, "event_time": T0, "producer": "wms"}
SAMPLES["ReplenishmentSuggestion"] = {
    "suggestion_id": "WH-BJ-CY-01/VEG-POTATO@PCK-KL20260601001-1", "stock_key": "WH-BJ-CY-01/VEG-POTATO",
    "warehouse_id": "WH-BJ-CY-01", "sku": "VEG-POTATO", "unit": "KG", "reason": "BELOW_REORDER_POINT",
    "decided_at": T0, "on_hand": 80.0, "forecast_daily": 100.0, "forecast_std": 20.0, "history_days": 28,
    "service_level": 0.98, "lead_time_days": 1.0, "lead_time_demand": 100.0, "safety_stock": 41.07,
    "reorder_point": 141.07, "order_up_to": 241.07, "suggested_quantity": 161.5, "rule_version": 1,
    "policy": "reorder-point/v1"}


def test_samples_cover_every_latest_record_type():
    assert set(SAMPLES) == {e.short_name for e in CATALOG.entries()}


FRAMED = {name: codec.encode(name, record) for name, record in SAMPLES.items()}


def _raises(data: bytes | None, error: type[CodecError], reason_code: str, schema_id: int | None) -> CodecError:
    with pytest.raises(CodecError) as caught:
        codec.decode(data)
    assert type(caught.value) is error
    assert caught.value.reason_code == reason_code
    assert caught.value.schema_id == schema_id
    return caught.value


# --- framing ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [None, b"", b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x02"],
                         ids=["none", "empty", "1-byte", "2-bytes", "3-bytes", "4-bytes"])
def test_missing_or_short_value_is_not_avro_framed(data: bytes | None):
    _raises(data, NotAvroFramed, "NOT_AVRO_FRAMED", None)


@pytest.mark.parametrize("magic", [1, 0x7F, 0x80, 0xFF, ord("{")])
def test_wrong_magic_byte_is_not_avro_framed(magic: int):
    data = bytes([magic]) + FRAMED["OrderCreated"][1:]
    _raises(data, NotAvroFramed, "NOT_AVRO_FRAMED", None)


def test_json_text_is_not_avro_framed():
    _raises(b'{"order_id": "KL20260601001"}', NotAvroFramed, "NOT_AVRO_FRAMED", None)


@pytest.mark.parametrize("schema_id", [0, 20, 100, 999, 2**31 - 1])
def test_unknown_schema_id(schema_id: int):
    data = b"\x00" + schema_id.to_bytes(4, "big") + FRAMED["OrderCreated"][5:]
    error = _raises(data, UnknownSchemaId, "UNKNOWN_SCHEMA_ID", schema_id)
    assert str(schema_id) in str(error)


@pytest.mark.parametrize("raw_id", [2**31, 2**32 - 1])
def test_a_schema_id_with_the_sign_bit_set_is_unknown_and_fits_a_dead_letter(raw_id: int):
    # Confluent ids are signed 32-bit: the top bit means a negative id no registry issues.
    # schema_id stays None so the dead letter (an Avro int field) can always be encoded.
    data = b"\x00" + raw_id.to_bytes(4, "big") + FRAMED["OrderCreated"][5:]
    error = _raises(data, UnknownSchemaId, "UNKNOWN_SCHEMA_ID", None)
    assert "negative" in str(error)


# --- body ------------------------------------------------------------------------------

@pytest.mark.parametrize("record_type", sorted(FRAMED))
def test_every_truncation_of_a_body_fails_to_decode(record_type: str):
    framed = FRAMED[record_type]
    schema_id = CATALOG.latest(record_type).id
    for end in range(5, len(framed)):
        _raises(framed[:end], AvroDecodeFailed, "AVRO_DECODE_FAILED", schema_id)


@pytest.mark.parametrize("garbage", [b"\x00", b"\x02\x00", b"trailing"])
def test_trailing_bytes_fail_to_decode(garbage: bytes):
    error = _raises(FRAMED["PaymentConfirmed"] + garbage, AvroDecodeFailed, "AVRO_DECODE_FAILED",
                    CATALOG.latest("PaymentConfirmed").id)
    assert f"{len(garbage)} trailing bytes" in str(error)


def test_body_written_for_another_schema_fails_to_decode():
    gps_header = b"\x00" + CATALOG.latest("GpsPing").id.to_bytes(4, "big")
    _raises(gps_header + FRAMED["OrderCreated"][5:], AvroDecodeFailed, "AVRO_DECODE_FAILED",
            CATALOG.latest("GpsPing").id)


@settings(max_examples=500, deadline=None)
@given(schema_id=st.sampled_from(KNOWN_IDS), body=st.binary(max_size=256))
def test_random_body_behind_a_valid_header_decodes_or_fails_cleanly(schema_id: int, body: bytes):
    data = b"\x00" + schema_id.to_bytes(4, "big") + body
    try:
        decoded = codec.decode(data)
    except AvroDecodeFailed as exc:
        assert (exc.reason_code, exc.schema_id) == ("AVRO_DECODE_FAILED", schema_id)
    else:
        assert isinstance(decoded, Decoded)
        assert decoded.schema_id == schema_id
        assert isinstance(decoded.value, dict)


@settings(max_examples=500, deadline=None)
@given(record_type=st.sampled_from(sorted(FRAMED)), data=st.data())
def test_corrupted_byte_in_a_valid_record_decodes_or_fails_cleanly(record_type: str, data: st.DataObject):
    framed = FRAMED[record_type]
    position = data.draw(st.integers(5, len(framed) - 1), label="position")
    corrupted = framed[:position] + bytes([data.draw(st.integers(0, 255), label="byte")]) + framed[position + 1:]
    schema_id = CATALOG.latest(record_type).id
    try:
        decoded = codec.decode(corrupted)
    except AvroDecodeFailed as exc:
        assert exc.schema_id == schema_id
    else:
        assert decoded.schema_id == schema_id


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64))
def test_any_bytes_decode_or_raise_a_codec_error(data: bytes):
    try:
        codec.decode(data)
    except CodecError as exc:
        expected = {NotAvroFramed: "NOT_AVRO_FRAMED", UnknownSchemaId: "UNKNOWN_SCHEMA_ID",
                    AvroDecodeFailed: "AVRO_DECODE_FAILED"}
        assert expected[type(exc)] == exc.reason_code


# --- encoding --------------------------------------------------------------------------

REQUIRED_FIELDS = [
    (name, field["name"])
    for name in sorted(SAMPLES)
    for field in CATALOG.latest(name).raw["fields"]
    if "default" not in field
]


@pytest.mark.parametrize(("record_type", "field"), REQUIRED_FIELDS)
def test_record_missing_a_required_field_fails_to_encode(record_type: str, field: str):
    record = {k: v for k, v in SAMPLES[record_type].items() if k != field}
    with pytest.raises(EncodeFailed) as caught:
        codec.encode(record_type, record)
    assert caught.value.reason_code == "AVRO_ENCODE_FAILED"
    assert caught.value.schema_id == CATALOG.latest(record_type).id
    assert field in str(caught.value)


def test_fields_with_defaults_may_be_left_out():
    record = {k: v for k, v in SAMPLES["OrderCreated"].items() if k != "remark"}
    assert codec.decode(codec.encode("OrderCreated", record)).value["remark"] is None


@pytest.mark.parametrize(("record_type", "change"), [
    ("OrderCreated", {"customer_id": None}),
    ("OrderCreated", {"version": "1"}),
    ("OrderCreated", {"lines": None}),
    ("OrderCreated", {"event_time": "2026-06-01T06:00:00Z"}),
    ("PaymentConfirmed", {"method": "BITCOIN"}),
    ("GpsPing", {"accuracy_m": "5m"}),
    ("DeadLetter", {"key": "not bytes"}),
    ("OrderCreated", {"event_id": "\ud800"}),
    ("OrderCreated", {"total_cents": 2**63}),
])
def test_record_with_a_wrong_value_fails_to_encode(record_type: str, change: dict[str, Any]):
    with pytest.raises(EncodeFailed) as caught:
        codec.encode(record_type, {**SAMPLES[record_type], **change})
    assert caught.value.schema_id == CATALOG.latest(record_type).id


def test_record_with_an_unknown_field_fails_to_encode():
    # A misspelt field ("remarks" for "remark") must not be dropped silently. Passed with
    # strict_allow_default=True; fails since encode() stopped passing it.
    with pytest.raises(EncodeFailed) as caught:
        codec.encode("OrderCreated", {**SAMPLES["OrderCreated"], "remarks": "后门进"})
    assert "remarks" in str(caught.value)


def test_unknown_record_type_fails_to_encode():
    with pytest.raises(UnknownRecordType) as caught:
        codec.encode("OrderTeleported", {})
    assert caught.value.reason_code == "UNEXPECTED_RECORD_TYPE"


any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(record_type=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_any_field_value_encodes_or_fails_with_encode_failed(record_type: str, data: st.DataObject):
    record = dict(SAMPLES[record_type])
    field = data.draw(st.sampled_from(sorted(record)), label="field")
    record[field] = data.draw(any_value, label="value")
    try:
        codec.encode(record_type, record)
    except EncodeFailed as exc:
        assert exc.schema_id == CATALOG.latest(record_type).id


# --- values that encode but should not (bugs: these tests fail) -----------------------

def test_int_field_out_of_32_bit_range_fails_to_encode():
    # Avro "int" is 32-bit; fastavro writes 2**31 as a longer varint that Java readers reject.
    with pytest.raises(EncodeFailed):
        codec.encode("PaymentConfirmed", {**SAMPLES["PaymentConfirmed"], "version": 2**31}, checked=True)


def test_naive_datetime_fails_to_encode():
    # fastavro encodes a naive datetime in the process's local time zone, so the bytes depend on TZ.
    with pytest.raises(EncodeFailed):
        codec.encode("PaymentConfirmed", {**SAMPLES["PaymentConfirmed"], "event_time": datetime(2026, 6, 1, 6, 0)},
                     checked=True)
