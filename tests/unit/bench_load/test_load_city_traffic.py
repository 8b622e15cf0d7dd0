"""The generated city: rates per topic, legal order stories, vans that move, times on schedule."""

import itertools
import math
from collections import Counter

import pytest

from bench.load.city_traffic import CityTraffic, order_id
from bench.load.mix import Schedule, city_mix
from bench.load.probes import probe_story
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from schemas.topics import GPS, ORDER_EVENTS, SENSORS, STOCK

START = 1_780_000_000_000


def run(rate: float, seconds: int, schedule: Schedule | None = None) -> tuple[CityTraffic, list]:
    city = CityTraffic(city_mix(rate), schedule or Schedule(seconds, 0, 3), START)
    return city, [it for s in range(seconds) for it in city.second(s)]


def test_rates_per_topic_match_the_mix() -> None:
    _, items = run(500, 60)
    by = Counter(it.topic for it in items)
    mix = city_mix(500)
    assert by[GPS.name] == pytest.approx(mix.gps_per_s * 60, rel=0.01)
    assert by[SENSORS.name] == pytest.approx(mix.sensors_per_s * 60, rel=0.01)
    # stories started in the last ~3 min are not finished yet: at most the mix's order rate
    assert 0.5 * mix.order_events_per_s * 60 < by[ORDER_EVENTS.name] <= mix.order_events_per_s * 60 * 1.01


def test_order_stories_fold_without_dead_letters_and_dispatch_to_vans() -> None:
    _, items = run(200, 200)
    events = [(it.record_type, it.record) for it in items if it.topic == ORDER_EVENTS.name]
    states, rejections = fold_all(events)
    assert rejections == []
    statuses = Counter(st["view"]["status"] for st in states.values() if st["view"])
    assert statuses["SIGNED"] > 0 and statuses["DELIVERING"] > 0
    dispatched = [r for t, r in events if t == "OrderDispatched"]
    per_van = Counter(r["driver_id"] for r in dispatched)
    # round robin over the fleet: every dispatch to another van until each has one
    assert len(per_van) == min(len(dispatched), city_mix(200).vans) and max(per_van.values()) <= 2
    assert all(it.record["kind"] == "PICK" for it in items if it.topic == STOCK.name)


def test_probe_story_is_legal() -> None:
    story = probe_story("KLPTEST00001")
    _, rejections = fold_all(story)
    assert rejections == []
    assert [t for t, _ in story][2] == "StockChecked"
    assert any(line["status"] == "SHORT" for line in story[2][1]["lines"])


def test_every_record_encodes_and_is_due_in_order_with_event_time_on_schedule() -> None:
    codec = AvroCodec()
    schedule = Schedule(10, 5, 3)
    city = CityTraffic(city_mix(300), schedule, START)
    last = -1.0
    for s in range(math.ceil(schedule.city_s)):
        for it in city.second(s):
            codec.encode(it.record_type, it.record)
            assert it.wall_s >= last - 1e-9
            assert it.record["event_time"] == START + round(it.wall_s * 1000)
            last = it.wall_s
    assert last <= schedule.wall_s


def test_vans_move_plausibly_between_pings() -> None:
    _, items = run(200, 40)
    pings: dict[str, list] = {}
    for it in items:
        if it.topic == GPS.name:
            pings.setdefault(it.key, []).append(it.record)
    for recs in pings.values():
        for a, b in itertools.pairwise(recs):
            dt = (b["event_time"] - a["event_time"]) / 1000
            assert dt == pytest.approx(10, abs=0.01)
            metres = math.hypot((b["lat"] - a["lat"]) * 111_000, (b["lng"] - a["lng"]) * 85_000)
            assert metres / dt < 60 / 3.6  # under 60 km/h, noise included


def test_followed_orders_are_tagged_with_their_version() -> None:
    _, items = run(500, 30)
    tagged = [it for it in items if it.follow]
    assert tagged and all(it.follow == (it.key, it.record["version"]) for it in tagged)
    assert all(it.record["customer_id"] < "CUST-L0100" for it in tagged if it.record_type == "OrderCreated")
    assert order_id(7) == "KLL00000007"
