"""The simulated warehouse stock (simulator.inventory): movements consistent with the order flow, the policies."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from models.replenishment import DAY_MS
from schemas.codec import AvroCodec
from simulator.city import build_city
from simulator.config import Command, SimulationConfig, Telemetry
from simulator.inventory import BuyerPolicy, StockBook, expected_daily_demand, order_demand
from simulator.traffic import simulate

CONFIG = SimulationConfig(seed=9, orders=300, orders_per_hour=6.0, gps_interval_s=600.0, sensor_interval_s=3600.0,
                          p_partial_shortage=0.2, p_refused=0.1, p_return_after_sign=0.1)


@pytest.fixture(scope="module")
def steps() -> list[Any]:
    return list(simulate(CONFIG, stock=True))


def movements(steps: list[Any]) -> list[dict[str, Any]]:
    return [s.record for s in steps if isinstance(s, Telemetry) and s.record_type == "StockMovement"]


def test_stock_is_opt_in_and_leaves_the_rest_of_the_run_unchanged(steps: list[Any]) -> None:
    plain = list(simulate(CONFIG))
    assert not any(getattr(s, "record_type", None) == "StockMovement" for s in plain)
    assert [s for s in steps if getattr(s, "record_type", None) != "StockMovement"] == plain


def test_movements_are_avro_valid_keyed_and_in_event_time(steps: list[Any]) -> None:
    codec = AvroCodec()
    ats = [s.at for s in steps]
    assert ats == sorted(ats)
    for s in steps:
        if isinstance(s, Telemetry) and s.record_type == "StockMovement":
            assert s.key == f"{s.record['warehouse_id']}/{s.record['sku']}" and s.record["event_time"] == s.at
            codec.encode("StockMovement", s.record)
    ids = [m["event_id"] for m in movements(steps)]
    assert len(ids) == len(set(ids))


def test_movements_follow_the_order_commands(steps: list[Any]) -> None:
    picks = {(m["order_id"], m["line_no"]): m["quantity"] for m in movements(steps) if m["kind"] == "PICK"}
    shorts = {(m["order_id"], m["line_no"]): m["quantity"] for m in movements(steps) if m["kind"] == "SHORTAGE"}
    weighed, short_lines = {}, {}
    for s in steps:
        if isinstance(s, Command) and s.name == "weigh_line":
            weighed[(s.order_id, s.payload["line_no"])] = s.payload["picked_quantity"]
        if isinstance(s, Command) and s.name == "check_stock":
            for row in s.payload["lines"]:
                if row["requested"] > row["available"]:
                    short_lines[(s.order_id, row["line_no"])] = pytest.approx(row["requested"] - row["available"])
    assert picks == weighed and shorts == short_lines and len(shorts) > 10
    kinds = {m["kind"] for m in movements(steps)}
    assert kinds == {"COUNT", "PICK", "SHORTAGE", "RECEIPT", "RETURN"}


def test_book_stock_never_goes_negative_and_receipts_come_one_lead_time_after_the_order(steps: list[Any]) -> None:
    on_hand: dict[str, float] = defaultdict(float)
    for m in movements(steps):
        key = f"{m['warehouse_id']}/{m['sku']}"
        if m["kind"] == "COUNT":
            on_hand[key] = m["quantity"]
        elif m["kind"] in ("RECEIPT", "RETURN"):
            on_hand[key] += m["quantity"]
        elif m["kind"] == "PICK":
            on_hand[key] -= m["quantity"]
        assert on_hand[key] >= -1e-6, m
    opening = [m for m in movements(steps) if m["reference"] == "OPENING"]
    assert len(opening) == 3 * 32 and all(m["event_time"] == CONFIG.start for m in opening)


def test_order_demand_is_the_simulators_order_stream() -> None:
    created = {s.order_id: s for s in simulate(CONFIG) if isinstance(s, Command) and s.name == "create"}
    demand = list(order_demand(CONFIG))
    assert 0.9 * len(created) < len(demand) <= len(created)
    for d in demand:
        c = created[d.order_id]
        assert (c.at, c.payload["warehouse_id"]) == (d.at, d.warehouse_id)
        assert [(ln["line_no"], ln["sku"], ln["unit"], ln["quantity"]) for ln in c.payload["lines"]] == list(d.lines)


def test_expected_demand_is_the_generators_mean() -> None:
    config = SimulationConfig(seed=4, orders=24 * 60 * 14, orders_per_hour=60.0)
    city = build_city(config.seed, config.n_warehouses, config.n_restaurants, config.n_drivers)
    expected = expected_daily_demand(config, city)
    seen: dict[tuple[str, str], float] = defaultdict(float)
    for d in order_demand(config):
        for _, sku, _, q in d.lines:
            seen[(d.warehouse_id, sku)] += q / 14
    total_seen, total_expected = sum(seen.values()), sum(expected.values())
    assert total_seen == pytest.approx(total_expected, rel=0.05)


def test_buyer_policy_orders_a_fixed_quantity_below_its_minimum_and_the_book_receives_it_later() -> None:
    key = ("WH-1", "VEG-POTATO")
    policy = BuyerPolicy({key: 100.0}, lead_time_days=1.0, order_days=2.0)
    assert policy.initial(key) == 300.0 and policy.minimum(key) == 100.0
    assert policy.order(key, 0, 100.0) == 0.0 and policy.order(key, 0, 99.0) == 200.0
    book = StockBook(policy, [key], 1.0)
    book.take(key, 250.0)
    book.review(key, 1_000, 0)
    assert book.on_order[key] == 200.0
    book.review(key, 2_000, 0)  # the position counts what is on order: no second order
    assert book.on_order[key] == 200.0
    assert list(book.due(1_000 + DAY_MS - 1)) == []
    (receipt,) = list(book.due(1_000 + DAY_MS))
    assert receipt.quantity == 200.0 and book.on_hand[key] == 250.0 and book.on_order[key] == 0.0
