"""Stock levels, low-stock alerts and replenishment suggestions (projections.stock), with fixed instants."""

from __future__ import annotations

from typing import Any

import pytest

from config.alert_rules import load_rules_file
from models.replenishment import DAY_MS, business_day, plan_from_history, round_up
from projections import stock
from projections.keyed_batch import fold_batch
from projections.stock import StockContext, StockProjection, level_view, policy_params
from schemas.codec import AvroCodec
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import STOCK

T0 = 1_780_272_000_000  # 2026-06-01 08:00 Beijing
RULES = load_rules_file()
CTX = StockContext(RULES)
POLICY = policy_params(RULES.by_kind("low-stock"))
CODEC = AvroCodec(epoch_ms=True)
WH, SKU = "WH-BJ-CY-01", "VEG-POTATO"
KEY = f"{WH}/{SKU}"


def mv(kind: str, qty: float, at: int, eid: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"event_id": eid or f"{kind}-{at}-{qty}", "warehouse_id": WH, "sku": SKU, "kind": kind, "quantity": qty,
            "unit": "KG", "order_id": kw.get("order_id"), "line_no": kw.get("line_no"), "reference": None,
            "event_time": at, "producer": "wms"}


def history(days: int, daily: list[float], opening: float = 1000.0) -> list[dict[str, Any]]:
    """An opening count, then ``daily[i]`` picked on day i (two picks a day) and a receipt each evening
    that puts the stock back to ``opening``."""
    out = [mv("COUNT", opening, T0 - 60_000, "open")]
    for d in range(days):
        q = daily[d % len(daily)]
        out += [mv("PICK", q / 2, T0 + d * DAY_MS), mv("PICK", q / 2, T0 + d * DAY_MS + 3_600_000),
                mv("RECEIPT", q, T0 + d * DAY_MS + 10 * 3_600_000)]
    return out


def test_levels_follow_every_kind_of_movement() -> None:
    st, out, dup = stock.step(None, [mv("COUNT", 100.0, T0), mv("PICK", 12.5, T0 + 1), mv("SHORTAGE", 3.0, T0 + 2),
                                     mv("RECEIPT", 40.0, T0 + 3), mv("RETURN", 1.5, T0 + 4)], CTX)
    assert st is not None and dup == 0 and out == []  # no plan without history: no alert, no suggestion
    assert st["on_hand"] == 129.0
    assert st["today"] == {"picked": 12.5, "short": 3.0, "received": 40.0, "returned": 1.5}
    view = level_view(st)
    assert (view["on_hand"], view["day"], view["reorder_point"], view["updated_at"]) == (129.0, "20260601", None,
                                                                                         T0 + 4)
    st, _, _ = stock.step(st, [mv("COUNT", 90.0, T0 + DAY_MS)], CTX)  # a stock take sets it; a new day starts
    assert st["on_hand"] == 90.0 and st["today"]["picked"] == 0.0 and level_view(st)["day"] == "20260602"


def test_a_movement_seen_before_is_a_duplicate() -> None:
    m = mv("PICK", 10.0, T0, "PCK-1")
    st, _, dup = stock.step(None, [mv("COUNT", 50.0, T0 - 1), m, dict(m)], CTX)
    assert dup == 1 and st is not None and st["on_hand"] == 40.0
    st2, _, dup = stock.step(st, [dict(m)], CTX)
    assert dup == 1 and st2 is not None and st2["on_hand"] == 40.0


def test_daily_plan_starts_after_min_history_days_with_the_models_numbers() -> None:
    daily = [80.0, 120.0, 100.0, 90.0, 110.0]
    st, out, _ = stock.step(None, history(POLICY.min_history_days, daily), CTX)
    assert out == [] and st is not None and st["plan"] is None
    st, out, _ = stock.step(st, [mv("PICK", 5.0, T0 + POLICY.min_history_days * DAY_MS)], CTX)
    expected = plan_from_history([daily[d % len(daily)] for d in range(POLICY.min_history_days)], POLICY)
    assert expected is not None
    (kind, s), = out
    assert kind == "replenishment" and s["reason"] == "DAILY_PLAN"
    assert s["suggestion_id"] == f"{KEY}@PICK-{s['decided_at']}-5.0"
    assert s["forecast_daily"] == pytest.approx(expected.forecast.mean, abs=1e-3)
    assert s["forecast_std"] == pytest.approx(expected.forecast.std, abs=1e-3)
    assert s["reorder_point"] == pytest.approx(expected.reorder_point, abs=1e-3)
    assert s["order_up_to"] == pytest.approx(expected.order_up_to, abs=1e-3)
    assert s["on_hand"] == 995.0 and s["suggested_quantity"] == 0.0  # well above the reorder point
    CODEC.encode("ReplenishmentSuggestion", s)


def test_low_stock_opens_with_a_suggestion_and_resolves_on_the_receipt() -> None:
    st, _, _ = stock.step(None, [*history(8, [100.0, 120.0]), mv("RECEIPT", 0.0, T0 + 8 * DAY_MS)], CTX)  # day 8
    rop, out_to = st["plan"]["reorder_point"], st["plan"]["order_up_to"]
    at = T0 + 8 * DAY_MS + 3_600_000
    st, out, _ = stock.step(st, [mv("PICK", 1000.0 - rop + 10.0, at, order_id="KL1", line_no=1)], CTX)
    assert [k for k, _ in out] == ["alert", "replenishment"]
    alert, sug = out[0][1], out[1][1]
    assert alert["alert_id"] == f"low-stock/stock/{KEY}" and alert["status"] == "OPEN"
    assert alert["warehouse_id"] == WH and alert["evidence"]["on_hand"] == format(round(rop - 10.0, 3), "g")
    assert alert["message"].startswith(f"{SKU} at warehouse {WH} is below its reorder point")
    assert sug["reason"] == "BELOW_REORDER_POINT"
    assert sug["suggested_quantity"] == round_up(out_to - st["on_hand"], "KG") > 0
    st, out, _ = stock.step(st, [mv("PICK", 1.0, at + 1)], CTX)  # still low: nothing new
    assert out == []
    st, out, _ = stock.step(st, [mv("RECEIPT", 500.0, at + 2)], CTX)
    (kind, resolved), = out
    assert kind == "alert" and resolved["status"] == "RESOLVED" and resolved["evidence"]["cleared_by"] == "RECEIPT"
    st, out, _ = stock.step(st, [mv("PICK", 600.0, at + 3)], CTX)  # low again: the same alert re-opens
    assert out[0][1]["occurrences"] == 2 and out[0][1]["status"] == "OPEN"


def test_without_the_rule_only_levels() -> None:
    st, out, _ = stock.step(None, history(10, [100.0]), StockContext(None, levels=True))
    assert st["plan"] is None and {k for k, _ in out} == {"level"}
    assert out[-1][1] == {"warehouse_id": WH, "sku": SKU, "unit": "KG", "on_hand": 1000.0, "picked_today": 100.0,
                          "short_today": 0.0, "event_time": T0 + 9 * DAY_MS + 10 * 3_600_000}


def test_late_movement_of_an_earlier_day_counts_in_that_days_demand() -> None:
    st, _, _ = stock.step(None, [mv("COUNT", 100.0, T0), mv("PICK", 10.0, T0 + DAY_MS)], CTX)
    st, _, _ = stock.step(st, [mv("PICK", 5.0, T0 + 60_000)], CTX)
    assert st["on_hand"] == 85.0 and st["today"]["picked"] == 10.0
    assert st["demand"] == [[business_day(T0), 5.0], [business_day(T0 + DAY_MS), 10.0]]


def record(offset: int, v: dict[str, Any], key: str | None = None, partition: int = 0) -> SourceRecord:
    return SourceRecord(STOCK.name, partition, offset, (key or f"{v['warehouse_id']}/{v['sku']}").encode(),
                        CODEC.encode("StockMovement", v), v["event_time"])


def test_projection_dead_letters_a_wrong_key_and_a_bad_quantity_and_skips_redelivered_offsets() -> None:
    p = StockProjection(CODEC, CTX)
    bad_key = p.decode(record(0, mv("PICK", 1.0, T0), key="WH-BJ-CY-01"))
    bad_qty = p.decode(record(1, mv("PICK", -1.0, T0)))
    other = p.decode(SourceRecord(STOCK.name, 0, 2, b"x", CODEC.encode("GpsPing", {
        "event_id": "g", "driver_id": "D", "vehicle_id": "V", "event_time": T0, "producer": "p", "lat": 1.0,
        "lng": 1.0, "speed_kmh": 0.0, "heading_deg": 0.0, "accuracy_m": None}), T0))
    assert isinstance(bad_key, DeadLetter) and bad_key.reason_code == "INVALID_EVENT"
    assert isinstance(bad_qty, DeadLetter) and "quantity" in bad_qty.reason
    assert isinstance(other, DeadLetter) and other.reason_code == "UNEXPECTED_RECORD_TYPE"
    records = [record(i, m) for i, m in enumerate(history(9, [100.0]))]
    states: dict[str, Any] = {}
    first = fold_batch(p, records, lambda keys: {k: states[k] for k in keys if k in states})
    states.update({k: f.state for k, f in first.folded.items()})
    again = fold_batch(p, records[-5:], lambda keys: {k: states[k] for k in keys if k in states})
    assert again.folded[KEY].changed is False and again.counts.duplicates == 5 and again.counts.applied == 0


def test_outputs_do_not_depend_on_batching() -> None:
    from simulator.config import SimulationConfig
    from simulator.traffic import simulate

    config = SimulationConfig(seed=5, orders=500, orders_per_hour=2.0, gps_interval_s=3600.0,
                              sensor_interval_s=36_000.0)
    moves = [s.record for s in simulate(config, stock=True) if getattr(s, "record_type", None) == "StockMovement"]
    moves += moves[100:140]  # re-published later: duplicates by event id
    records = [record(i, m) for i, m in enumerate(moves)]
    p = StockProjection(CODEC, CTX)

    def run(size: int) -> tuple[list[Any], dict[str, Any]]:
        states: dict[str, Any] = {}
        outs: list[Any] = []
        for i in range(0, len(records), size):
            result = fold_batch(p, records[i:i + size], lambda keys: {k: states[k] for k in keys if k in states})
            for key, f in result.folded.items():
                states[key] = f.state
                outs += [(key, o) for o in f.outputs]
        return sorted(outs, key=lambda ko: (ko[0], ko[1][1].get("updated_at") or ko[1][1].get("decided_at"))), states

    one, states_one = run(1)
    big, states_big = run(997)
    assert one == big and states_one == states_big
    kinds = {o[0] for _, o in one}
    assert kinds == {"alert", "replenishment"}, "the log should reach a plan and a low-stock alert"
    assert all(min(s["on_hand"], 0) == 0 for s in states_one.values())


@pytest.mark.parametrize(("change", "message"), [({"service_level": 1.0}, "service_level"),
                                                 ({"min_history_days": 30}, "min_history_days"),
                                                 ({"history_days": 7.5}, "whole days")])
def test_low_stock_params_are_validated(change: dict[str, float], message: str) -> None:
    import json

    from config.alert_rules import DEFAULT_RULES_PATH
    from projections.alert_rules import RulesError, load_rules

    raw = json.loads(DEFAULT_RULES_PATH.read_text())
    rule = next(r for r in raw["rules"] if r["kind"] == "low-stock")
    rule.update(change)
    with pytest.raises(RulesError, match=message):
        load_rules(raw)
    assert POLICY is not None and (POLICY.service_level, POLICY.history_days, POLICY.min_history_days) == (0.98, 28, 7)
