"""KPI exactness: the three stages (``streams.replay_streams.replay_kpis``) over a simulated day give the
figures an independent oracle computes from the final order views, and the same figures under
duplication, reordering, batch boundaries and a replay of the compacted topics (latest view only)."""

from __future__ import annotations

import functools
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.kpi_step import KpiWindowProjection
from projections.kpis import contribution, figures, order_facts, window_keys
from projections.order_state import fold
from projections.order_status import ORDER_EVENT_TYPES
from projections.timed_batch import TimedBatches
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from schemas.partitioning import murmur2_partition
from schemas.topics import ALERTS, ORDER_STATE
from simulator.config import SimulationConfig
from simulator.traffic import event_log
from streams.replay_streams import _replay, kpi_records, replay_kpis

codec = AvroCodec(epoch_ms=True)
EXPOSED = 4  # orders named by exposure alerts


@functools.cache
def day() -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """Every order view version of a seeded simulated day (in fold order) and a few exposure alerts (plus
    alerts of other rules, which the KPIs ignore)."""
    log = event_log(SimulationConfig(seed=3, orders=40, orders_per_hour=40.0, n_drivers=6, p_refused=0.1,
                                     p_accident=0.2, p_return_after_sign=0.1, p_partial_shortage=0.2, p_scale_under=0.2,
                                     p_out_of_stock=0.05, p_cancel=0.05, conditions=False))
    states: dict[str, Any] = {}
    views = []
    for t, v in log:
        if t in ORDER_EVENT_TYPES:
            result = fold(states.get(v["order_id"]), t, v, trace=True)
            states[v["order_id"]] = result.state
            views += result.views
    ids = sorted(states)
    alerts = []
    for i in range(EXPOSED // 2):  # each trip: OPEN names one order, RESOLVED both
        a = {"alert_id": f"cold-chain-exposure/vehicle/VAN-{i}/CHILLED/trip-{i}", "rule_id": "cold-chain-exposure",
             "rule_version": 1, "severity": "CRITICAL", "status": "OPEN", "order_id": None, "driver_id": None,
             "vehicle_id": f"VAN-{i}", "warehouse_id": None, "customer_id": None, "opened_at": views[0]["updated_at"],
             "updated_at": views[0]["updated_at"], "resolved_at": None, "occurrences": 1, "message": "exposed",
             "evidence": {"orders": ids[2 * i]}, "location": None, "audience": ["OPERATOR"]}
        alerts += [a, {**a, "status": "RESOLVED", "evidence": {"orders": f"{ids[2 * i]},{ids[2 * i + 1]}"}},
                   {**a, "alert_id": f"late-delivery/order/{ids[-1]}", "rule_id": "late-delivery",
                    "evidence": {"orders": ids[-1]}}]
    return tuple(views), tuple(alerts)


def records(topic: str, partitions: int, record_type: str, key: str, values: list[dict[str, Any]]
            ) -> list[list[SourceRecord]]:
    per: dict[int, list[SourceRecord]] = {}
    for v in values:
        k = v[key].encode()
        p = murmur2_partition(k, partitions)
        q = per.setdefault(p, [])
        q.append(SourceRecord(topic, p, len(q), k, codec.encode(record_type, v), v["updated_at"]))
    return [per[p] for p in sorted(per)]


def run(views: list[dict[str, Any]], alerts: list[dict[str, Any]], batch: int = 2000) -> dict[str, dict[str, Any]]:
    result = replay_kpis(codec, records(ALERTS.name, ALERTS.partitions, "Alert", "alert_id", alerts),
                         records(ORDER_STATE.name, ORDER_STATE.partitions, "OrderState", "order_id", views), batch)
    assert not result.dead_letters
    return result.figures()


@functools.cache
def live() -> dict[str, dict[str, Any]]:
    views, alerts = day()
    return run(list(views), list(alerts))


def oracle() -> dict[str, dict[str, Any]]:
    """The figures straight from the final views and the alerts' orders, without any stage."""
    views, alerts = day()
    final: dict[str, dict[str, Any]] = {}
    for v in views:
        final[v["order_id"]] = v
    exposures: dict[str, set[str]] = {}
    for a in alerts:
        if a["rule_id"] == "cold-chain-exposure":
            for o in a["evidence"]["orders"].split(","):
                exposures.setdefault(o, set()).add(a["alert_id"])
    windows: dict[str, dict[str, dict[str, Any]]] = {}
    for oid, v in final.items():
        facts = order_facts(v)
        for key in window_keys(facts):
            windows.setdefault(key, {})[oid] = contribution(facts, len(exposures.get(oid, ())))
    return {key: figures(key, entries) for key, entries in windows.items()}


def counted(figs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The windows with orders: a window an order left holds its retraction only where the stage saw it there."""
    return {k: fig for k, fig in figs.items() if fig["orders"]}


def test_the_stages_give_the_oracles_figures() -> None:
    got, expected = live(), oracle()
    # a driver window the order left (re-dispatch) keeps its retraction: it exists with the order not counted
    assert {k: v for k, v in got.items() if k in expected} == {k: v for k, v in expected.items()}
    assert all(got[k]["orders"] == 0 for k in set(got) - set(expected))
    city = [f for k, f in got.items() if k.startswith("city|")]
    assert sum(f["orders"] for f in city) == len({v["order_id"] for v in day()[0]})
    assert sum(f["exposed_orders"] for f in city) == EXPOSED
    assert all(0 < f["fulfilment_rate"] < 1 and 0 < f["loss_rate"] < 1 for f in city)
    assert {k.split("|")[0] for k in got} == {"city", "warehouse", "merchant", "driver"}


def test_a_replay_of_the_compacted_topics_gives_the_live_figures() -> None:
    views, alerts = day()
    latest_view = {v["order_id"]: v for v in views}
    latest_alert = {a["alert_id"]: a for a in alerts}
    got = run(list(latest_view.values()), list(latest_alert.values()))
    assert counted(got) == counted(live())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), copies=st.integers(0, 60), batch=st.integers(1, 300))
def test_duplicated_and_reordered_views_and_alerts_give_the_same_figures(seed: int, copies: int, batch: int) -> None:
    views, alerts = list(day()[0]), list(day()[1])
    rng = random.Random(seed)
    for _ in range(copies):  # re-published copies, later in the log
        i = rng.randrange(len(views))
        views.insert(rng.randrange(i, len(views) + 1), views[i])
    rng.shuffle(views)
    rng.shuffle(alerts)
    alerts += rng.sample(alerts, k=min(len(alerts), copies % 5))
    assert counted(run(views, alerts, batch)) == counted(live())


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_window_stage_is_exact_under_any_order_and_duplication_of_contributions(data: st.DataObject) -> None:
    views, alerts = day()
    stages = replay_kpis(codec, records(ALERTS.name, ALERTS.partitions, "Alert", "alert_id", list(alerts)),
                         records(ORDER_STATE.name, ORDER_STATE.partitions, "OrderState", "order_id", list(views)))
    contributions = [o for o in stages.outputs if o[0] == "kpi-contribution"]
    picked = data.draw(st.permutations(contributions))
    dups = data.draw(st.lists(st.sampled_from(contributions), max_size=30))
    shuffled = kpi_records(codec, [*picked, *dups], 6)
    window = _replay(TimedBatches(KpiWindowProjection(codec), None), shuffled, data.draw(st.integers(1, 500)))
    assert window.figures() == stages.figures()
