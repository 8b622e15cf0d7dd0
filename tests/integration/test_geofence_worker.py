"""Order events + GPS -> order worker (van orders) -> geofence worker -> transitions, on the real stack.

The order agent publishes the order's place on the van (``kuailv.van-orders.v1``); the geofence
agent joins it with the driver's pings through that repartition topic (never Redis) and
publishes ENTER / DWELL / EXIT at the warehouse and at the customer's site; a late ping is a
``LATE_EVENT`` dead letter; the driver's state is in Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from config.settings import Settings
from projections.geo import EARTH_RADIUS_M
from schemas.codec import AvroCodec
from schemas.topics import (
    ALERTS,
    DEAD_LETTERS,
    GEOFENCE_TRANSITIONS,
    GPS,
    ORDER_ETAS,
    ORDER_EVENTS,
    ORDER_STATE,
    VAN_ORDERS,
)
from simulator.events import MINUTE, T0, order_story
from streams.replay import read_topic
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ProjectProcess

pytestmark = pytest.mark.integration
WAREHOUSE = (39.9625, 116.4980)  # WH-BJ-CY-01 in config/geofences.v1.json (radius 200 m)


def east(point: tuple[float, float], metres: float) -> tuple[float, float]:
    import math

    return point[0], point[1] + math.degrees(metres / (EARTH_RADIUS_M * math.cos(math.radians(point[0]))))


class Scenario:
    def __init__(self, settings: Settings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.driver = f"DRV-{self.tag}"
        self.order_id = f"KLGEO{self.tag}"
        self.topics = private_topics(settings.kafka_bootstrap, self.tag, [ORDER_EVENTS, ORDER_STATE, VAN_ORDERS, GPS,
                                                                          GEOFENCE_TRANSITIONS, ALERTS, ORDER_ETAS,
                                                                          DEAD_LETTERS])
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-geo-{self.tag}",
                    "KUAILV_REDIS_PREFIX": f"geo{self.tag}", "KUAILV_WORKER_BATCH_SECONDS": "0.1",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics)}
        self.settings = settings
        self.codec = AvroCodec(epoch_ms=True)
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.seq = 0

    def ping(self, where: tuple[float, float], at: int, eid: str | None = None) -> None:
        self.seq += 1
        value = {"event_id": eid or f"{self.tag}-{self.seq}", "driver_id": self.driver, "vehicle_id": "VAN-GEO",
                 "event_time": at, "producer": "driver-app/test", "lat": where[0], "lng": where[1],
                 "speed_kmh": 20.0, "heading_deg": 90.0, "accuracy_m": 5.0}
        self.producer.send(self.topics[GPS.name], self.driver.encode(), self.codec.encode("GpsPing", value))

    def mine(self, topic: str) -> list[dict[str, Any]]:
        out = []
        for rec in read_topic(self.settings.kafka_bootstrap, self.topics[topic], timeout_s=10):
            if rec.key == self.driver.encode() or topic in (DEAD_LETTERS.name, ALERTS.name, ORDER_ETAS.name):
                out.append(self.codec.decode(rec.value).value)
        return out


@pytest.fixture(scope="module")
def scenario(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    sc = Scenario(stack)
    story = order_story(sc.order_id, T0, ending="signed")
    dispatched = next(e for t, e in story if t == "OrderDispatched")
    dispatched["driver_id"] = sc.driver
    delivered_at = T0 + 4 * 60 * MINUTE + 600_000  # while the van waits inside the customer fence, below
    signed = [(t, e) for t, e in story if t == "OrderDelivered"]
    for _, e in signed:
        e["event_time"] = delivered_at
    created = story[0][1]
    customer = (created["delivery_address"]["location"]["lat"], created["delivery_address"]["location"]["lng"])
    sc.customer = customer  # type: ignore[attr-defined]
    worker = ProjectProcess(["worker", "--agents", "orders,geofences", "--loglevel", "warning"], sc.env,
                            tmp_path_factory.mktemp("geo") / "worker.log").start()
    sc.worker = worker  # type: ignore[attr-defined]
    try:
        for t, e in story:
            if t != "OrderDelivered":
                sc.producer.send(sc.topics[ORDER_EVENTS.name], sc.order_id.encode(), sc.codec.encode(t, e))
        sc.producer.flush()
        wait_for(lambda: sc.mine(VAN_ORDERS.name), 60, "the ON_BOARD van order")
        at = T0 + 4 * 60 * MINUTE  # after the dispatch
        step = 10_000
        # at the warehouse 6 min (dwell 5 min), leave, drive to the customer, stay 4 min (dwell 3)
        track = [WAREHOUSE] * 37 + [east(WAREHOUSE, 600), east(WAREHOUSE, 3000), east(WAREHOUSE, 3000)]
        track += [east(customer, 2000), east(customer, 500), east(customer, 100)] + [customer] * 24
        for n, where in enumerate(track):
            sc.ping(where, at + n * step)
            if n == 5:
                sc.ping(where, at + n * step, eid=f"{sc.tag}-5")  # a duplicate delivery
        sc.producer.flush()
        for t, e in signed:
            sc.producer.send(sc.topics[ORDER_EVENTS.name], sc.order_id.encode(), sc.codec.encode(t, e))
        sc.producer.flush()
        wait_for(lambda: len(sc.mine(VAN_ORDERS.name)) >= 2, 60, "the DELIVERED van order")
        end = at + len(track) * step
        for n in range(8):  # leave the customer
            sc.ping(east(customer, 3000 + n * 100), end + n * step)
        sc.ping(WAREHOUSE, T0 + 60_000, eid=f"{sc.tag}-late")  # hours behind: late
        sc.producer.flush()
        wait_for(lambda: any(t["kind"] == "EXIT" and t["order_id"] for t in sc.mine(GEOFENCE_TRANSITIONS.name)),
                 60, "leaving the customer")
        yield sc
    finally:
        code = worker.stop()
        if code not in (0, None):
            print(worker.log_tail())
        delete_topics(stack.kafka_bootstrap, sc.topics.values())


def test_transitions_at_the_warehouse_and_the_customer(scenario: Any) -> None:
    got = [(t["fence_id"], t["kind"]) for t in scenario.mine(GEOFENCE_TRANSITIONS.name)]
    site = f"customer-site/{scenario.order_id}"
    assert got == [("WH-BJ-CY-01", "ENTER"), ("WH-BJ-CY-01", "DWELL"), ("WH-BJ-CY-01", "EXIT"),
                   (site, "ENTER"), (site, "DWELL"), (site, "EXIT")]
    assert scenario.worker.alive(), scenario.worker.log_tail()


def test_late_ping_is_a_dead_letter_with_its_position(scenario: Any) -> None:
    dead = wait_for(lambda: [d for d in scenario.mine(DEAD_LETTERS.name) if d["reason_code"] == "LATE_EVENT"],
                    30, "the LATE_EVENT dead letter")
    assert len(dead) == 1 and dead[0]["event_id"] == f"{scenario.tag}-late"
    assert dead[0]["source_topic"] == GPS.name and dead[0]["source_offset"] >= 0


def test_driver_state_is_in_redis(scenario: Any) -> None:
    r = redis.Redis(port=scenario.settings.redis_port)
    state = orjson.loads(r.get(f"geo{scenario.tag}:geofence:{scenario.driver}"))
    assert state["late"] == 1 and state["sites"] == {} and state["pos"]
    stats = r.hgetall(f"geo{scenario.tag}:stats:geofences")
    assert int(stats[b"transitions_written"]) == 6 and int(stats[b"duplicates"]) >= 1
    # driver nearby (opened at the site, resolved on leaving), arriving soon (opened by the ETA, resolved at the site)
    assert int(stats[b"alerts_written"]) == 4


def test_driver_nearby_notice_opened_and_resolved(scenario: Any) -> None:
    alerts = {a["alert_id"]: a for a in scenario.mine(ALERTS.name)}
    notice = alerts[f"driver-nearby/order/{scenario.order_id}#1"]
    assert notice["status"] == "RESOLVED" and notice["severity"] == "INFO" and notice["driver_id"] == scenario.driver
    soon = alerts[f"arriving-soon/order/{scenario.order_id}#1"]
    assert soon["status"] == "RESOLVED" and soon["resolved_at"] == notice["opened_at"]


def test_eta_of_the_order_on_the_van(scenario: Any) -> None:
    etas = [e for e in scenario.mine(ORDER_ETAS.name) if e["order_id"] == scenario.order_id]
    assert etas and all(e["driver_id"] == scenario.driver and e["dispatch_count"] == 1 for e in etas)
    r = redis.Redis(port=scenario.settings.redis_port)
    last = orjson.loads(r.get(f"geo{scenario.tag}:eta:{scenario.order_id}"))
    assert last["computed_at"] == max(e["computed_at"] for e in etas)
