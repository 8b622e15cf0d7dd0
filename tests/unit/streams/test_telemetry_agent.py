"""TelemetryAgent.process/write without the network: GPS and cold-chain readings
become line-protocol points and latest driver positions; invalid ones become
dead letters while the rest of the batch is written."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, GPS, SENSORS
from simulator.events import T0, order_created
from streams.sinks.errors import SinkError
from streams.sinks.influx import gps_line, sensor_line
from streams.source import SourceRecord
from streams.telemetry_agent import TelemetryAgent
from tests.unit.streams.fakes import FakeDriverPositions, FakePointSink, FakeStats, ListOutput

CODEC = AvroCodec()
NOW = T0 + 86_400_000
SECOND = 1000


def gps(driver: str, seq: int, **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gps:{driver}:{seq}")), "driver_id": driver,
            "vehicle_id": f"VAN-{driver[-3:]}", "event_time": T0 + seq * 5 * SECOND, "producer": "driver-app/3.2",
            "lat": round(39.90 + seq / 1000, 6), "lng": 116.40, "speed_kmh": 30.5, "heading_deg": 90.0,
            "accuracy_m": 5.0, **over}


def sensor(device: str, seq: int, **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sensor:{device}:{seq}")), "device_id": device,
            "vehicle_id": "VAN-001", "warehouse_id": None, "compartment": "CHILLED",
            "event_time": T0 + seq * 30 * SECOND, "producer": "sensor-gateway", "temperature_c": 3.5,
            "humidity_pct": 88.0, **over}


class Log:
    def __init__(self) -> None:
        self.offset = 0

    def rec(self, topic: str, record_type: str, value: dict[str, Any], key: str | None = None) -> SourceRecord:
        self.offset += 1
        key = key if key is not None else value.get("driver_id") or value.get("device_id") or value["order_id"]
        return SourceRecord(topic, 1, self.offset, key.encode(), CODEC.encode(record_type, value), T0 + self.offset)


class Setup:
    def __init__(self) -> None:
        self.influx, self.positions, self.output = FakePointSink(), FakeDriverPositions(), ListOutput()
        self.agent = TelemetryAgent(AvroCodec(epoch_ms=True), self.influx, self.positions, self.output,  # type: ignore[arg-type]
                                    FakeStats(), consumer="t@unit", wall_clock_ms=lambda: NOW)

    def run(self, batch: Sequence[SourceRecord]) -> Any:
        staged = self.agent.process(list(batch))
        self.agent.write(staged)
        return staged.counts

    def position(self, driver: str) -> dict[str, Any] | None:
        return self.positions.get(driver)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [CODEC.decode(v).value for _, v in self.output.on(DEAD_LETTERS.name)]


def line_of(rec: SourceRecord) -> str:
    value = CODEC.decode(rec.value).value  # what the projector sees: decoded Avro (float32 speed, datetimes)
    return gps_line(value) if rec.topic == GPS.name else sensor_line(value)


def test_valid_readings_become_points_and_the_newest_position_per_driver() -> None:
    log = Log()
    batch = [
        log.rec(GPS.name, "GpsPing", gps("DRV-001", 2)),
        log.rec(GPS.name, "GpsPing", gps("DRV-001", 3)),
        log.rec(GPS.name, "GpsPing", gps("DRV-001", 1)),  # late
        log.rec(GPS.name, "GpsPing", gps("DRV-001", 3)),  # duplicate
        log.rec(GPS.name, "GpsPing", gps("DRV-002", 1, accuracy_m=None, lat=89.9)),
        log.rec(SENSORS.name, "SensorReading", sensor("SENS-VAN-001-C", 1)),
        log.rec(SENSORS.name, "SensorReading", sensor("SENS-WH-01", 1, vehicle_id=None, warehouse_id="WH-BJ-CY-01",
                                                      compartment="FROZEN", temperature_c=-19.5, humidity_pct=60.0)),
    ]
    s = Setup()
    stats = s.run(batch)
    assert s.influx.written == [line_of(r) for r in batch]
    assert s.influx.written[-1] == ("cold_chain,compartment=FROZEN,device_id=SENS-WH-01,warehouse_id=WH-BJ-CY-01 "
                                    "temperature_c=-19.5,humidity_pct=60.0 1780293630000")
    newest = gps("DRV-001", 3)
    assert s.position("DRV-001") == {"driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_id": newest["event_id"],
                                     "at": T0 + 15 * SECOND, "lat": newest["lat"], "lng": 116.40, "speed_kmh": 30.5,
                                     "heading_deg": 90.0}
    assert s.position("DRV-002")["lat"] == 89.9
    assert s.output.records == []  # no dead letters, nothing produced
    assert (stats.records, stats.applied, stats.points_written, stats.positions_written, stats.dead_letters) == \
           (7, 7, 7, 2, 0)
    # a later batch with an older ping never moves the driver back
    s.run([log.rec(GPS.name, "GpsPing", gps("DRV-001", 0))])
    assert s.position("DRV-001")["event_id"] == newest["event_id"]


def test_invalid_readings_are_dead_lettered_and_the_rest_is_written() -> None:
    log = Log()
    good = [log.rec(GPS.name, "GpsPing", gps("DRV-001", 1)),
            log.rec(SENSORS.name, "SensorReading", sensor("SENS-1", 1))]
    _, order = order_created("O-1")
    bad = {
        "lat 200": (log.rec(GPS.name, "GpsPing", gps("DRV-003", 1, lat=200.0)), "INVALID_EVENT"),
        "speed 500": (log.rec(GPS.name, "GpsPing", gps("DRV-004", 1, speed_kmh=500.0)), "INVALID_EVENT"),
        "NaN temperature": (log.rec(SENSORS.name, "SensorReading", sensor("SENS-2", 1, temperature_c=math.nan)),
                            "INVALID_EVENT"),
        "humidity 120": (log.rec(SENSORS.name, "SensorReading", sensor("SENS-3", 1, humidity_pct=120.0)),
                         "INVALID_EVENT"),
        "no vehicle or warehouse": (log.rec(SENSORS.name, "SensorReading", sensor("SENS-4", 1, vehicle_id=None)),
                                    "INVALID_EVENT"),
        "sensor on the gps topic": (log.rec(GPS.name, "SensorReading", sensor("SENS-5", 1)),
                                    "UNEXPECTED_RECORD_TYPE"),
        "ping on the sensor topic": (log.rec(SENSORS.name, "GpsPing", gps("DRV-005", 1)), "UNEXPECTED_RECORD_TYPE"),
        "order on the gps topic": (log.rec(GPS.name, "OrderCreated", order), "UNEXPECTED_RECORD_TYPE"),
        "key is not the driver": (log.rec(GPS.name, "GpsPing", gps("DRV-006", 1), key="DRV-999"), "INVALID_EVENT"),
        "key is not the device": (log.rec(SENSORS.name, "SensorReading", sensor("SENS-6", 1), key="SENS-999"),
                                  "INVALID_EVENT"),
        "not avro": (SourceRecord(GPS.name, 1, 999, b"DRV-007", b"{\"lat\": 1}", None), "NOT_AVRO_FRAMED"),
    }
    batch = [good[0], *(r for r, _ in bad.values()), good[1]]
    s = Setup()
    stats = s.run(batch)

    dls = s.dead_letters()
    assert [(dl["source_topic"], dl["source_offset"]) for dl in dls] == \
           [(r.topic, r.offset) for r, _ in bad.values()]
    for (what, (rec, code)), dl in zip(bad.items(), dls, strict=True):
        assert dl["reason_code"] == code, (what, dl["reason"])
        assert (dl["key"], dl["value"], dl["source_partition"]) == (rec.key, rec.value, rec.partition), what
        assert dl["consumer"] == "t@unit" and dl["reason"], what
    by_what = dict(zip(bad, dls, strict=True))
    assert "200.0" in by_what["lat 200"]["reason"]
    assert by_what["key is not the driver"]["event_id"] == gps("DRV-006", 1)["event_id"]
    assert by_what["order on the gps topic"]["record_type"] == "OrderCreated"
    assert s.influx.written == [line_of(good[0]), line_of(good[1])]
    assert s.position("DRV-001") is not None
    assert all(s.position(d) is None for d in ("DRV-003", "DRV-004", "DRV-005", "DRV-006", "DRV-999"))
    assert (stats.applied, stats.points_written, stats.positions_written, stats.dead_letters) == \
           (2, 2, 1, len(bad))


def test_a_failed_influx_write_saves_no_positions_and_raises_for_a_retry() -> None:
    log = Log()
    batch = [log.rec(GPS.name, "GpsPing", gps("DRV-001", 1))]
    s = Setup()
    s.influx.fail_next_write()
    staged = s.agent.process(batch)
    with pytest.raises(SinkError):
        s.agent.write(staged)
    assert s.position("DRV-001") is None
    s.agent.write(staged)
    assert s.position("DRV-001") is not None and s.influx.written


def test_a_driver_id_with_a_newline_is_a_dead_letter_not_a_broken_influx_write() -> None:
    # The value passes the codec and validate_gps; gps_line turns it into two lines, InfluxDB 1.6
    # answers 400 for the whole write, InfluxWriter raises SinkError and the loop retries the
    # batch forever. Expected: the ping is dead-lettered, the rest of the batch is written.
    log = Log()
    good = log.rec(GPS.name, "GpsPing", gps("DRV-001", 1))
    odd = log.rec(GPS.name, "GpsPing", gps("DRV-7\n", 1, vehicle_id="VAN-007"))
    s = Setup()
    s.run([good, odd])
    assert all("\n" not in point for point in s.influx.written), s.influx.written
    assert [(dl["source_offset"], dl["reason_code"]) for dl in s.dead_letters()] == [(odd.offset, "INVALID_EVENT")]
