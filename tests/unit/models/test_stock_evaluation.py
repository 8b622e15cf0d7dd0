"""The closed-loop policy comparison (models.stock_evaluation)."""

from __future__ import annotations

import pytest

from models.replenishment import DAY_MS, PolicyParams
from models.stock_evaluation import SuggestedPolicy, compare, run_policy, stock_report_section, table
from simulator.inventory import BuyerPolicy, Demand

KEY = ("WH-1", "VEG-POTATO")  # 3.50 yuan/kg
T0 = 1_780_272_000_000


def test_run_policy_counts_by_hand() -> None:
    """Stock 30 kg (min 10, order 20), lead time 1 day; demand 25 kg (5 left: below the minimum, 20 kg ordered),
    10 kg (short 5: a stock-out), 10 kg (short 10: the same stock-out), then after the receipt 10 kg."""
    policy = BuyerPolicy({KEY: 10.0}, lead_time_days=1.0, order_days=2.0)
    demands = [Demand(T0, "O1", "WH-1", ((1, "VEG-POTATO", "KG", 25.0),)),
               Demand(T0 + 1000, "O2", "WH-1", ((1, "VEG-POTATO", "KG", 10.0),)),
               Demand(T0 + 2000, "O3", "WH-1", ((1, "VEG-POTATO", "KG", 10.0),)),
               Demand(T0 + DAY_MS + 2000, "O4", "WH-1", ((1, "VEG-POTATO", "KG", 10.0),))]
    r = run_policy(demands, policy, [KEY], 1.0, T0, T0 + 2 * DAY_MS)
    assert (r.lines, r.lines_short, r.stockout_events, r.purchase_orders) == (4, 2, 1, 1)
    assert r.requested_value == pytest.approx(55 * 3.5) and r.filled_value == pytest.approx(40 * 3.5)
    assert r.fill_rate == pytest.approx(40 / 55)
    # 5 kg for 1 s, none until the receipt at T0+DAY, 20 kg for 2 s, 10 kg from T0+DAY+2000 to the end
    stock_ms = 5 * 1000 + 20 * 2000 + 10 * (DAY_MS - 2000)
    assert r.avg_stock_value == pytest.approx(stock_ms * 3.5 / (2 * DAY_MS))


def test_suggested_policy_falls_back_until_it_has_history_then_orders_up_to_s() -> None:
    buyer = BuyerPolicy({KEY: 100.0})
    p = SuggestedPolicy(PolicyParams(service_level=0.5, min_history_days=2, history_days=2), buyer, first_day=0)
    assert p.order(KEY, 1, 50.0) == buyer.order(KEY, 1, 50.0) == 200.0  # one day of history: the buyer's
    p.observe(KEY, 0, 40.0)
    p.observe(KEY, 1, 60.0)
    assert p.order(KEY, 2, 50.0) == 0.0  # s = 50 (mean 50, z = 0), position 50: not below
    assert p.order(KEY, 2, 49.0) == 51.0  # up to S = 100


def test_the_suggestions_have_fewer_stockouts_on_the_same_demand() -> None:
    current, suggested = compare(seed=3, weeks=1, orders_per_hour=30.0)
    assert current.lines == suggested.lines > 10_000
    assert suggested.stockout_events < current.stockout_events / 2
    assert suggested.fill_rate > current.fill_rate


def test_report_section_is_a_markdown_table() -> None:
    title, body = stock_report_section(seed=1, weeks=1)
    assert title.startswith("Replenishment")
    rows = [line for line in body.splitlines() if line.startswith("|")]
    assert len(rows) == 8 and rows[0].count("|") == 5 and "stock-out events" in rows[2]


def test_table_shows_the_difference_against_the_current_policy() -> None:
    current, suggested = compare(seed=2, weeks=1, orders_per_hour=20.0)
    text = table(current, ("s", suggested))
    assert f"| stock-out events | {current.stockout_events:,} | {suggested.stockout_events:,} (" in text
