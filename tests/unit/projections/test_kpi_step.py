"""The KPI stages as keyed projections (``projections.kpi_step``): what each emits, re-dispatch
retractions, exposure fan-out, duplicates and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.keyed_batch import fold_batch
from projections.kpi_step import KpiExposureProjection, KpiOrderProjection, KpiWindowProjection
from projections.order_state import fold
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.topics import ALERTS, KPI_CONTRIBUTIONS, KPI_EXPOSURES, ORDER_STATE
from simulator.events import T0, order_story

codec = AvroCodec(epoch_ms=True)


def views(order_id: str, ending: str) -> list[dict[str, Any]]:
    state, out = None, []
    for t, v in order_story(order_id, ending=ending):
        result = fold(state, t, v, trace=True)
        state = result.state
        out += result.views
    return out


def rec(topic: str, offset: int, key: str, record_type: str, value: dict[str, Any]) -> SourceRecord:
    return SourceRecord(topic, 0, offset, key.encode(), codec.encode(record_type, value), T0)


def run(projection: Any, records: Sequence[SourceRecord], states: dict[str, Any]) -> list[tuple[str, dict]]:
    result = fold_batch(projection, records, lambda keys: {k: states[k] for k in keys if k in states})
    out = []
    for key, f in result.folded.items():
        if f.changed and f.state is not None:
            states[key] = f.state
            out += f.outputs
    assert not result.dead_letters, result.dead_letters
    return out


def exposure_alert(orders: str, status: str = "OPEN") -> dict[str, Any]:
    return {"alert_id": "cold-chain-exposure/vehicle/VAN-001/CHILLED/trip-1", "rule_id": "cold-chain-exposure",
            "rule_version": 1, "severity": "CRITICAL", "status": status, "order_id": None, "driver_id": None,
            "vehicle_id": "VAN-001", "warehouse_id": None, "customer_id": None, "opened_at": T0 + 5,
            "updated_at": T0 + 9, "resolved_at": None, "occurrences": 1, "message": "exposed",
            "evidence": {"orders": orders, "order_count": str(len(orders.split(",")))}, "location": None,
            "audience": ["OPERATOR"]}


def test_a_redispatched_order_leaves_the_first_drivers_window() -> None:
    states: dict[str, Any] = {}
    p = KpiOrderProjection(codec)
    out = [c for i, v in enumerate(views("KL1", "redispatched"))
           for _, c in run(p, [rec(ORDER_STATE.name, i, "KL1", "OrderState", v)], states)]
    by_window: dict[str, dict[str, Any]] = {}
    for c in out:
        if c["window_key"] not in by_window or c["order_version"] >= by_window[c["window_key"]]["order_version"]:
            by_window[c["window_key"]] = c
    day = by_window["city|all|2026-06-01"]["day"]
    assert by_window[f"driver|DRV-001|{day}"]["counted"] is False
    assert by_window[f"driver|DRV-002|{day}"]["counted"] is True and by_window[f"driver|DRV-002|{day}"]["delivered"]
    # the retraction has the revision of the re-dispatch, so it beats the first driver's earlier contributions
    first = [c for c in out if c["window_key"] == f"driver|DRV-001|{day}"]
    assert [c["counted"] for c in first] == [True] * (len(first) - 1) + [False] and len(first) > 1
    assert first[-1]["order_version"] > max(c["order_version"] for c in first[:-1])


def test_an_order_view_seen_again_or_older_emits_nothing() -> None:
    states: dict[str, Any] = {}
    p = KpiOrderProjection(codec)
    vs = views("KL1", "signed")
    assert run(p, [rec(ORDER_STATE.name, 0, "KL1", "OrderState", vs[-1])], states)
    assert run(p, [rec(ORDER_STATE.name, 0, "KL1", "OrderState", vs[-1])], states) == []  # re-delivered offset
    assert run(p, [rec(ORDER_STATE.name, 1, "KL1", "OrderState", vs[-1])], states) == []  # re-published
    assert run(p, [rec(ORDER_STATE.name, 2, "KL1", "OrderState", vs[3])], states) == []  # older version


def test_exposure_fans_out_per_order_once_and_skips_other_alerts() -> None:
    states: dict[str, Any] = {}
    p = KpiExposureProjection(codec)
    first = run(p, [rec(ALERTS.name, 0, exposure_alert("KL1,KL2")["alert_id"], "Alert", exposure_alert("KL1,KL2"))],
                states)
    assert [(k, v["order_id"]) for k, v in first] == [("kpi-exposure", "KL1"), ("kpi-exposure", "KL2")]
    resolved = exposure_alert("KL1,KL2,KL3", "RESOLVED")
    assert [v["order_id"] for _, v in run(p, [rec(ALERTS.name, 1, resolved["alert_id"], "Alert", resolved)],
                                          states)] == ["KL3"]
    other = {**exposure_alert("KL9"), "alert_id": "late-delivery/order/KL9", "rule_id": "late-delivery"}
    assert run(p, [rec(ALERTS.name, 2, other["alert_id"], "Alert", other)], states) == []
    assert other["alert_id"] not in states


def test_an_exposure_raises_the_revision_and_marks_the_weight_lost() -> None:
    states: dict[str, Any] = {}
    p = KpiOrderProjection(codec)
    v = views("KL1", "signed")[-1]
    before = run(p, [rec(ORDER_STATE.name, 0, "KL1", "OrderState", v)], states)
    exposure = {"order_id": "KL1", "alert_id": "a1", "vehicle_id": "VAN-001", "exposed_at": T0 + 1}
    after = run(p, [rec(KPI_EXPOSURES.name, 0, "KL1", "KpiExposure", exposure)], states)
    assert [c["exposures"] for _, c in before] == [0] * 4 and [c["exposures"] for _, c in after] == [1] * 4
    assert all(c["exposed_kg"] == c["scale_kg"] == c["lost_kg"] > 0 for _, c in after)
    assert run(p, [rec(KPI_EXPOSURES.name, 1, "KL1", "KpiExposure", exposure)], states) == []  # same alert


def test_window_keeps_the_newest_contribution_per_order() -> None:
    states: dict[str, Any] = {}
    orders = KpiOrderProjection(codec)
    contributions = [c for i, v in enumerate(views("KL1", "signed"))
                     for _, c in run(orders, [rec(ORDER_STATE.name, i, "KL1", "OrderState", v)], states)
                     if c["dimension"] == "city"]
    p = KpiWindowProjection(codec)
    windows: dict[str, Any] = {}
    key = contributions[0]["window_key"]
    backwards = [rec(KPI_CONTRIBUTIONS.name, i, key, "KpiContribution", c) for i, c in enumerate(contributions[::-1])]
    out = run(p, backwards[:1], windows)
    assert out[0][1]["delivered"] == 1 and out[0][1]["orders"] == 1
    assert run(p, backwards[1:], windows) == []  # every older revision is ignored: no new figures


def test_a_record_under_the_wrong_key_is_dead_lettered() -> None:
    v = views("KL1", "signed")[-1]
    result = fold_batch(KpiOrderProjection(codec), [rec(ORDER_STATE.name, 0, "KL2", "OrderState", v)], lambda k: {})
    assert [d.reason_code for d in result.dead_letters] == ["INVALID_EVENT"]
    result = fold_batch(KpiWindowProjection(codec), [rec(KPI_CONTRIBUTIONS.name, 0, "x", "OrderState", v)],
                        lambda k: {})
    assert [d.reason_code for d in result.dead_letters] == ["UNEXPECTED_RECORD_TYPE"]
