"""Order events + sensor readings -> worker (orders, alerts) -> alert topic, Redis views, InfluxDB, on the real stack.

* a stock shortage opens at the stock check and resolves when the order is signed;
* an event-time timer: an order left in DELIVERING past its window fires late-delivery when a
  later order view in the same partition moves the watermark past the due time (not before);
* a compressor failure opens a cold-chain breach that resolves when the sensor recovers (decided by
  the fleet agent, which the alert agent forwards the van's readings to);
* the latest record per alert id on the compacted topic equals Redis, and InfluxDB has a point
  per change.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, DEAD_LETTERS, FLEET, ORDER_EVENTS, ORDER_STATE, SENSORS, VAN_ORDERS
from simulator.events import MINUTE, T0, order_story
from streams.queries import alert_listing
from streams.replay import read_topic
from tests.integration.kafka_helpers import (
    SyncProducer,
    delete_topics,
    murmur2_partition,
    private_topics,
    renames_env,
    wait_for,
)
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration


class Scenario:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.topics = private_topics(settings.kafka_bootstrap, self.tag,
                                     [ORDER_EVENTS, ORDER_STATE, SENSORS, ALERTS, VAN_ORDERS, DEAD_LETTERS, FLEET])
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-al-{self.tag}",
                    "KUAILV_REDIS_PREFIX": f"al{self.tag}", "KUAILV_WORKER_BATCH_SECONDS": "0.1",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics)}
        self.settings = Settings(**{**settings.__dict__, "redis_prefix": f"al{self.tag}"})
        self.codec = AvroCodec(epoch_ms=True)
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.device = f"SEN-{self.tag}"

    def order(self, oid: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        for t, e in events:
            self.producer.send(self.topics[ORDER_EVENTS.name], oid.encode(), self.codec.encode(t, e))
        self.producer.flush()

    def mine(self) -> dict[str, dict[str, Any]]:
        """Latest record per alert id of this run (the compacted topic's meaning)."""
        latest: dict[str, dict[str, Any]] = {}
        for rec in read_topic(self.settings.kafka_bootstrap, self.topics[ALERTS.name], timeout_s=10):
            value = self.codec.decode(rec.value).value
            if self.tag in value["alert_id"]:
                latest[value["alert_id"]] = value
        return latest


def same_partition_ids(tag: str, n: int) -> list[str]:
    """Order ids of this run that land in one partition, so one moves the other's watermark."""
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        oid = f"KLAL{tag}{i:03d}"
        if murmur2_partition(oid.encode(), ORDER_EVENTS.partitions) == 0:
            ids.append(oid)
        i += 1
    return ids


@pytest.fixture(scope="module")
def scenario(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    sc = Scenario(stack)
    worker = ProjectProcess(["worker", "--agents", "orders,alerts,fleet", "--loglevel", "warning"], sc.env,
                            tmp_path_factory.mktemp("alerts") / "worker.log").start()
    sc.worker = worker  # type: ignore[attr-defined]
    try:
        late_id, signed_id, clock_id = same_partition_ids(sc.tag, 3)
        probe = sc.producer.send(sc.topics[SENSORS.name], late_id.encode(), b"")  # is murmur2 what Kafka does?
        assert sc.producer.flush()[probe][0] == 0
        sc.late_id, sc.signed_id = late_id, signed_id  # type: ignore[attr-defined]
        story = order_story(late_id, T0)
        sc.order(late_id, story[: next(i for i, (t, _) in enumerate(story) if t == "OrderDispatched") + 1])
        sc.order(signed_id, order_story(signed_id, T0))
        for n, temp in enumerate([3.0, 3.4] + [8.0 + n * 0.2 for n in range(12)] + [3.9, 3.1]):
            value = {"event_id": f"{sc.tag}-{n}", "device_id": sc.device, "vehicle_id": f"VAN-{sc.tag}",
                     "warehouse_id": None, "compartment": "CHILLED", "event_time": T0 + n * MINUTE,
                     "producer": "sensor-gateway", "temperature_c": temp, "humidity_pct": 85.0}
            sc.producer.send(sc.topics[SENSORS.name], sc.device.encode(), sc.codec.encode("SensorReading", value))
        sc.producer.flush()
        wait_for(lambda: len(sc.mine()) >= 3, 60, "the first alerts")
        sc.before_clock = sc.mine()  # type: ignore[attr-defined]
        # a later order in the same partition moves its event-time watermark past the late order's due time
        window_end = story[0][1]["delivery_window_end"]
        sc.order(clock_id, order_story(clock_id, window_end + 45 * MINUTE, ending="cancelled"))
        wait_for(lambda: f"late-delivery/order/{late_id}" in sc.mine(), 60, "the late-delivery timer")
        yield sc
    finally:
        worker.stop()
        if not os.environ.get("KEEP_TOPICS"):
            delete_topics(stack.kafka_bootstrap, sc.topics.values())


def test_instant_alerts_open_and_resolve(scenario: Any) -> None:
    alerts = scenario.mine()
    shortage = alerts[f"stock-shortage/order/{scenario.signed_id}"]
    assert shortage["status"] == "RESOLVED" and shortage["resolved_at"] > shortage["opened_at"]
    assert alerts[f"stock-shortage/order/{scenario.late_id}"]["status"] == "OPEN"  # still on the van


def test_late_delivery_fires_from_the_watermark_at_its_due_time(scenario: Any) -> None:
    assert f"late-delivery/order/{scenario.late_id}" not in scenario.before_clock  # no wall-clock firing
    late = scenario.mine()[f"late-delivery/order/{scenario.late_id}"]
    assert late["status"] == "OPEN" and late["severity"] == "CRITICAL"
    assert late["opened_at"] == int(late["evidence"]["window_end"]) + 30 * MINUTE
    assert f"late-delivery/order/{scenario.signed_id}" not in scenario.mine()  # signed in time


def test_compressor_failure_breach_resolves_when_the_sensor_recovers(scenario: Any) -> None:
    breach = scenario.mine()[f"cold-chain-breach/vehicle/VAN-{scenario.tag}/CHILLED"]
    assert breach["status"] == "RESOLVED" and breach["opened_at"] == T0 + 2 * MINUTE
    assert float(breach["evidence"]["max_c"]) >= 10.0


def test_redis_views_and_influx_points_match_the_topic(scenario: Any) -> None:
    topic = scenario.mine()
    open_in_redis = {a["alert_id"] for a in alert_listing(scenario.settings, open_only=True, limit=1000)}
    assert open_in_redis == {aid for aid, a in topic.items() if a["status"] == "OPEN"}
    order_open = {a["alert_id"] for a in alert_listing(scenario.settings, order_id=scenario.late_id)}
    assert order_open == {aid for aid, a in topic.items() if a["status"] == "OPEN" and a["order_id"] ==
                          scenario.late_id}
    s = scenario.settings
    q = urllib.parse.urlencode({"db": s.influx_db, "q": f"SELECT count(occurrences) FROM alerts WHERE "
                                                         f"alert_id =~ /{scenario.tag}/ GROUP BY status"})
    with urllib.request.urlopen(f"{s.influx_url}/query?{q}", timeout=10) as resp:
        series = json.load(resp)["results"][0].get("series", [])
    counts = {sr["tags"]["status"]: sr["values"][0][1] for sr in series}
    assert counts.get("OPEN", 0) >= len(topic) and counts.get("RESOLVED", 0) >= 2
