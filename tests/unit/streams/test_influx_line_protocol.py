"""InfluxDB line protocol helpers: escaping, field types, exact lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulator.events import T0
from streams.sinks.influx import eta_line, gps_line, line, sensor_line

GPS = {"event_id": "7c1e2b1e-0000-5000-8000-000000000001", "driver_id": "DRV-001", "vehicle_id": "VAN-001",
       "event_time": T0, "producer": "driver-app/3.2", "lat": 39.9042, "lng": 116.4074, "speed_kmh": 31.5,
       "heading_deg": 90.0, "accuracy_m": 4.5}
SENSOR = {"event_id": "7c1e2b1e-0000-5000-8000-000000000002", "device_id": "SENS-VAN-001-C", "vehicle_id": "VAN-001",
          "warehouse_id": None, "compartment": "CHILLED", "event_time": T0 + 30_000, "producer": "sensor-gateway",
          "temperature_c": 3.5, "humidity_pct": 88.0}


def test_spaces_commas_and_equals_are_escaped_in_tags_and_field_keys() -> None:
    got = line("cold_chain", {"zone name": "room 1,north=A"}, {"temp c": 1.5, "a=b,c": 2.0}, 1000)
    assert got == r"cold_chain,zone\ name=room\ 1\,north\=A temp\ c=1.5,a\=b\,c=2.0 1000"


def test_measurement_escapes_spaces_and_commas_but_not_equals() -> None:
    assert line("cold chain,v2=x", {}, {"t": 1.0}, 5) == r"cold\ chain\,v2=x t=1.0 5"


def test_tags_are_sorted_and_empty_or_missing_tags_dropped() -> None:
    got = line("m", {"vehicle_id": "VAN-1", "device_id": "D-1", "warehouse_id": None, "room": ""}, {"t": 1.0}, 7)
    assert got == "m,device_id=D-1,vehicle_id=VAN-1 t=1.0 7"


def test_string_fields_are_quoted_with_quotes_and_backslashes_escaped() -> None:
    got = line("note", {}, {"text": 'he said "ok" C:\\cold room'}, 1)
    assert got == 'note text="he said \\"ok\\" C:\\\\cold room" 1'


def test_field_types_ints_get_i_bools_are_words_floats_keep_their_point() -> None:
    got = line("m", {}, {"count": 3, "neg": -2, "ok": True, "bad": False, "x": 2.0, "tiny": 1e-07}, 9)
    assert got == "m count=3i,neg=-2i,ok=true,bad=false,x=2.0,tiny=1e-07 9"


def test_none_fields_are_dropped() -> None:
    assert line("m", {"t": "a"}, {"x": None, "y": 1.25, "z": None}, 3) == "m,t=a y=1.25 3"


@pytest.mark.parametrize("fields", [{}, {"x": None}, {"x": None, "y": None}])
def test_a_point_without_fields_raises(fields: dict[str, None]) -> None:
    with pytest.raises(ValueError, match="has no fields"):
        line("gps", {"driver_id": "DRV-001"}, fields, T0)


def test_gps_line_exact() -> None:
    assert gps_line(GPS) == ("gps,driver_id=DRV-001,vehicle_id=VAN-001 lat=39.9042,lng=116.4074,speed_kmh=31.5,"
                             "heading_deg=90.0,accuracy_m=4.5 1780293600000")


def test_gps_line_without_accuracy_and_with_a_decoded_time_and_int_speed() -> None:
    p = {**GPS, "accuracy_m": None, "speed_kmh": 0, "event_time": datetime.fromtimestamp(T0 / 1000 + 5, tz=UTC)}
    assert gps_line(p) == ("gps,driver_id=DRV-001,vehicle_id=VAN-001 lat=39.9042,lng=116.4074,speed_kmh=0.0,"
                           "heading_deg=90.0 1780293605000")


def test_sensor_line_exact_for_a_van_and_a_warehouse() -> None:
    assert sensor_line(SENSOR) == ("cold_chain,compartment=CHILLED,device_id=SENS-VAN-001-C,vehicle_id=VAN-001 "
                                   "temperature_c=3.5,humidity_pct=88.0 1780293630000")
    room = {**SENSOR, "device_id": "SENS-WH-01", "vehicle_id": None, "warehouse_id": "WH-BJ-CY-01",
            "compartment": "FROZEN", "temperature_c": -20, "humidity_pct": 61.5}
    assert sensor_line(room) == ("cold_chain,compartment=FROZEN,device_id=SENS-WH-01,warehouse_id=WH-BJ-CY-01 "
                                 "temperature_c=-20.0,humidity_pct=61.5 1780293630000")


def test_a_newline_in_a_tag_never_produces_a_second_line() -> None:
    # Line protocol has no escape for a newline: the helper must refuse it (ValueError) or the
    # one point becomes two lines. On the test stack's InfluxDB 1.6 the write then fails with
    # 400 "unable to parse ... missing fields", InfluxWriter raises SinkError and run_batch
    # retries that batch forever: one odd driver id stalls its telemetry partition.
    try:
        got = gps_line({**GPS, "driver_id": "DRV-7\n"})
    except ValueError:
        return
    assert "\n" not in got, got


def test_eta_line_carries_the_prediction_and_its_model() -> None:
    eta = {"order_id": "KL202606010001", "driver_id": "DRV-001", "estimator": "hgb/3f2a", "eta": 1780294230000,
           "computed_at": 1780293630000, "late_risk": 0.8125, "distance_m": 4200.5, "stops_before": 1,
           "dispatch_count": 2}
    assert eta_line(eta) == ("order_eta,driver_id=DRV-001,estimator=hgb/3f2a,order_id=KL202606010001 "
                             "eta_ms=1780294230000i,remaining_s=600.0,late_risk=0.8125,distance_m=4200.5,"
                             "stops_before=1i,dispatch_count=2i 1780293630000")
    baseline = eta_line({**eta, "estimator": "distance-speed/v1", "late_risk": None})
    assert "late_risk" not in baseline and "estimator=distance-speed/v1" in baseline
