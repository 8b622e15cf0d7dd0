"""Kafka -> worker -> Redis, projection topic, InfluxDB and dead letters,
against the real test stack. Events are published straight to Kafka here; the
command-side path (store -> relay -> Kafka) is covered in test_command_to_projection.py.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from projections.order_state import fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from schemas.topics import DEAD_LETTERS, GPS, ORDER_EVENTS, ORDER_STATE, SENSORS
from simulator.events import MINUTE, T0, order_dispatched, order_story, payment_confirmed
from streams.replay import read_topic, replay_records
from streams.sinks.redis_orders import RedisOrderStore
from tests.integration.kafka_helpers import SyncProducer, wait_for
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.integration
ENDINGS = ["signed", "redispatched", "refused", "cancelled", "out_of_stock"]


def gps(driver: str, seq: int, lat: float, lng: float, **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{driver}:{seq}")), "driver_id": driver,
            "vehicle_id": f"VAN-{driver}", "event_time": T0 + seq * 5000, "producer": "driver-app/test",
            "lat": lat, "lng": lng, "speed_kmh": 30.0, "heading_deg": 90.0, "accuracy_m": 5.0, **over}


def sensor(device: str, seq: int, temp: float) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{device}:{seq}")), "device_id": device,
            "vehicle_id": "VAN-1", "warehouse_id": None, "compartment": "CHILLED", "event_time": T0 + seq * 30000,
            "producer": "sensor-gateway", "temperature_c": temp, "humidity_pct": 88.0}


class Run:
    """One isolated pipeline run: own order ids, consumer group and Redis prefix."""

    def __init__(self, settings: Settings) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.settings = settings
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-it-{tag}",
                    "KUAILV_REDIS_PREFIX": f"it{tag}", "KUAILV_WORKER_BATCH_SECONDS": "0.1"}
        self.prefix = f"it{tag}"
        self.codec = AvroCodec()
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.order_events: list[tuple[str, dict[str, Any]]] = []
        self.refs: dict[str, int] = {}
        self.pings: list[dict[str, Any]] = []

    def oid(self, i: int) -> str:
        return f"KLIT{self.tag}{i:04d}"


@pytest.fixture(scope="module")
def run(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    r = Run(stack)
    rng = random.Random(7)
    for i in range(30):
        r.order_events += order_story(r.oid(i), T0 + i * MINUTE, ending=ENDINGS[i % len(ENDINGS)])
    log = r.order_events + rng.sample(r.order_events, 40)  # re-deliveries
    rng.shuffle(log)  # arrival order is not version order

    # Poison on order 0's partition key, so the test can see that later records of
    # the same partition are still processed.
    poison_key = r.oid(0).encode()
    r.refs["garbage"] = r.producer.send(ORDER_EVENTS.name, poison_key, b"\x07not avro at all")
    r.refs["unknown_id"] = r.producer.send(ORDER_EVENTS.name, poison_key, struct.pack(">bI", 0, 9999) + b"\x02")
    r.refs["truncated"] = r.producer.send(ORDER_EVENTS.name, poison_key, r.codec.encode(*log[0])[:9])
    for t, e in log:
        r.producer.send(ORDER_EVENTS.name, e["order_id"].encode(), r.codec.encode(t, e))
    # Impossible events: dispatch straight after payment on a new order; a second,
    # different payment claiming version 2 of order 1.
    bad = r.oid(99)
    story = order_story(bad, ending="signed")[:2]
    for t, e in story:
        r.producer.send(ORDER_EVENTS.name, bad.encode(), r.codec.encode(t, e))
    r.order_events += story
    t, e = order_dispatched(bad, 3, T0 + 30 * MINUTE)
    r.refs["illegal"] = r.producer.send(ORDER_EVENTS.name, bad.encode(), r.codec.encode(t, e))
    r.order_events.append((t, e))
    t, e = payment_confirmed(r.oid(1), 2, T0 + 3 * MINUTE, 1)
    e["event_id"] = str(uuid.uuid4())
    r.refs["conflict"] = r.producer.send(ORDER_EVENTS.name, r.oid(1).encode(), r.codec.encode(t, e))
    r.order_events.append((t, e))
    t, e = order_story(r.oid(2))[0]
    r.refs["wrong_key"] = r.producer.send(ORDER_EVENTS.name, b"someone-else", r.codec.encode(t, e))

    for d in range(3):
        driver = f"DRV-{r.tag}-{d}"
        for seq in range(20):
            p = gps(driver, seq, 39.90 + d * 0.01 + seq * 0.0005, 116.40 + seq * 0.0005)
            r.pings.append(p)
            r.producer.send(GPS.name, driver.encode(), r.codec.encode("GpsPing", p))
        r.producer.send(GPS.name, driver.encode(), r.codec.encode("GpsPing", r.pings[-5]))  # duplicate, late
    bad_ping = gps(f"DRV-{r.tag}-0", 999, 200.0, 116.4)
    r.refs["bad_ping"] = r.producer.send(GPS.name, bad_ping["driver_id"].encode(), r.codec.encode("GpsPing", bad_ping))
    for seq in range(10):
        s = sensor(f"SENS-{r.tag}", seq, 3.0 + seq * 0.1)
        r.producer.send(SENSORS.name, s["device_id"].encode(), r.codec.encode("SensorReading", s))
    r.positions = r.producer.flush()

    worker = ProjectProcess(["worker", "--loglevel", "warning"], r.env,
                            tmp_path_factory.mktemp("worker") / "worker.log").start()
    r.worker = worker
    try:
        yield r
    finally:
        code = worker.stop()
        if code not in (0, -15, None):
            print(worker.log_tail())


def redis_client(s: Settings) -> redis.Redis:
    return redis.Redis.from_url(s.redis_url)


def expected_views(r: Run) -> dict[str, dict[str, Any]]:
    states, _ = fold_all(r.order_events)
    return {oid: public_view(st["view"]) for oid, st in states.items() if st["view"] is not None}


def test_every_order_reaches_its_final_projection_in_redis(run: Run) -> None:
    expected = expected_views(run)
    rc = redis_client(run.settings)

    store = RedisOrderStore(rc, run.prefix)

    def done() -> bool:
        views = [store.view(oid) for oid in expected]
        return all(v is not None and v["version"] == expected[oid]["version"]
                   for v, oid in zip(views, expected, strict=True))

    assert run.worker.alive(), run.worker.log_tail()
    wait_for(done, 90, "all orders projected", interval=0.5)
    for oid, view in expected.items():
        assert store.view(oid) == view, oid
    assert expected[run.oid(99)]["rejectedEvents"] == 1
    # The worker's fresh group reads the whole topic, other tests' orders included: look at ours.
    ours = f"KLIT{run.tag}"
    for status in ("SIGNED", "RETURNING", "CANCELLED", "OUT_OF_STOCK"):
        members = {m.decode() for m in rc.smembers(f"{run.prefix}:orders:by-status:{status}")}
        assert {m for m in members if m.startswith(ours)} == {o for o, v in expected.items() if v["status"] == status}
    drivers = rc.smembers(f"{run.prefix}:orders:by-driver:DRV-002")
    by_driver = {m.decode() for m in drivers if m.startswith(ours.encode())}
    assert by_driver == {o for o, v in expected.items() if (v["driverInfo"] or {}).get("driverId") == "DRV-002"}


def test_replaying_the_topic_gives_exactly_the_state_left_in_redis(run: Run) -> None:
    test_every_order_reaches_its_final_projection_in_redis(run)
    replay = replay_records(read_topic(run.settings.kafka_bootstrap, ORDER_EVENTS.name), AvroCodec())
    store = RedisOrderStore(redis_client(run.settings), run.prefix)
    ours = [v for v in replay.views() if v["orderId"].startswith(f"KLIT{run.tag}")]
    assert len(ours) == len(expected_views(run))
    for view in ours:
        assert store.view(view["orderId"]) == view


def test_poison_records_land_in_the_dead_letter_topic_with_reason_and_position(run: Run) -> None:
    test_every_order_reaches_its_final_projection_in_redis(run)
    codec = AvroCodec()

    def ours() -> dict[tuple[str, int, int], dict[str, Any]]:
        out = {}
        for rec in read_topic(run.settings.kafka_bootstrap, DEAD_LETTERS.name):
            d = codec.decode(rec.value).value
            if d["consumer"].startswith(f"kuailv-it-{run.tag}"):
                out[(d["source_topic"], d["source_partition"], d["source_offset"])] = d
        return out

    expect = {"garbage": "NOT_AVRO_FRAMED", "unknown_id": "UNKNOWN_SCHEMA_ID", "truncated": "AVRO_DECODE_FAILED",
              "illegal": "ILLEGAL_TRANSITION", "conflict": "VERSION_CONFLICT", "wrong_key": "INVALID_EVENT",
              "bad_ping": "INVALID_EVENT"}
    topic_of = {"bad_ping": GPS.name}

    wanted = {(topic_of.get(name, ORDER_EVENTS.name), *run.positions[run.refs[name]]) for name in expect}

    def complete() -> dict[tuple[str, int, int], dict[str, Any]] | None:
        got = ours()  # the fresh group also re-reads older runs' poison: wait for this run's
        return got if wanted <= set(got) else None

    got = wait_for(complete, 60, "dead letters")
    for name, code in expect.items():
        partition, offset = run.positions[run.refs[name]]
        d = got[(topic_of.get(name, ORDER_EVENTS.name), partition, offset)]
        assert d["reason_code"] == code, (name, d["reason"])
        assert d["reason"]
        assert d["value"] is not None
    assert "DELIVERING" in got[(ORDER_EVENTS.name, *run.positions[run.refs["illegal"]])]["reason"] or \
        "allowed only from" in got[(ORDER_EVENTS.name, *run.positions[run.refs["illegal"]])]["reason"]
    assert run.worker.alive(), "worker must survive poison records:\n" + run.worker.log_tail()


def test_projection_topic_is_readable_by_kcat_in_the_standard_wire_format(run: Run) -> None:
    test_every_order_reaches_its_final_projection_in_redis(run)
    import io

    import fastavro

    from schemas.catalog import CommittedCatalog

    out = subprocess.run(["kcat", "-C", "-b", run.settings.kafka_bootstrap, "-t", ORDER_STATE.name, "-o", "beginning",
                          "-e", "-q", "-f", "%k\\t%S\\t%s\\n"], capture_output=True, timeout=60, check=True).stdout
    latest: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        tab = out.index(b"\t", pos)
        key = out[pos:tab].decode()
        tab2 = out.index(b"\t", tab + 1)
        size = int(out[tab + 1:tab2])
        latest[key] = out[tab2 + 1:tab2 + 1 + size]
        pos = tab2 + 1 + size + 1
    catalog = CommittedCatalog.load()
    expected = expected_views(run)
    for oid, view in expected.items():
        value = latest[oid]
        assert value[0] == 0, "Confluent magic byte"
        schema_id = struct.unpack(">I", value[1:5])[0]
        schema = fastavro.parse_schema(catalog.by_id(schema_id).raw)
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
        assert record["order_id"] == oid
        assert record["status"] == view["status"] and record["version"] == view["version"]


def test_gps_and_sensor_readings_land_in_influxdb_and_latest_position_in_redis(run: Run) -> None:
    s = run.settings

    def count(q: str) -> int:
        url = f"{s.influx_url}/query?" + urllib.parse.urlencode({"db": s.influx_db, "q": q})
        body = json.load(urllib.request.urlopen(url, timeout=10))
        series = body["results"][0].get("series")
        return series[0]["values"][0][1] if series else 0

    gps_q = f"SELECT count(lat) FROM gps WHERE driver_id =~ /^DRV-{run.tag}-/"
    wait_for(lambda: count(gps_q) == 60, 60, "60 distinct GPS points (duplicate and invalid ping not stored)")
    wait_for(lambda: count(f"SELECT count(temperature_c) FROM cold_chain WHERE device_id = 'SENS-{run.tag}'") == 10,
             30, "10 sensor points")
    rc = redis_client(s)
    for d in range(3):
        driver = f"DRV-{run.tag}-{d}"
        last = max((p for p in run.pings if p["driver_id"] == driver), key=lambda p: p["event_time"])
        pos = wait_for(lambda driver=driver: rc.hgetall(f"{run.prefix}:driver:{driver}:position"), 30, driver)
        assert int(pos[b"at"]) == last["event_time"]
        assert float(pos[b"lat"]) == pytest.approx(last["lat"])


def test_cli_prints_one_order_as_json(run: Run) -> None:
    test_every_order_reaches_its_final_projection_in_redis(run)
    oid = run.oid(1)  # redispatched, signed
    out = subprocess.run([*_kuailv(), "order", oid], cwd=ROOT, env=run.worker.env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["orderId"] == oid and doc["status"] == "SIGNED"
    assert doc["driverInfo"]["driverId"] == "DRV-002" and doc["driverInfo"]["location"]["lat"] == pytest.approx(39.9042)
    assert [i["name"] for i in doc["items"]] == ["有机菠菜", "五花肉", "鲜牛奶 1L"]
    missing = subprocess.run([*_kuailv(), "order", "NOPE"], cwd=ROOT, env=run.worker.env, capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1 and "not found" in missing.stderr


def _kuailv() -> list[str]:
    import sys

    return [sys.executable, "-m", "cli.main"]


