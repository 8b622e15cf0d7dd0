"""The dashboard reads' pure parts: the answer cache, the offset-rate sampler, cold-chain states, warehouse markers
from the shipped fence file, stock and KPI documents, and what is kept of an order view."""

from __future__ import annotations

import threading
import time
from typing import Any

from config.geofences import load_fence_file
from projections.order_state import fold_all
from projections.timefmt import iso
from service import dashboard_models as dm
from service.dashboard_kpis import current_doc, point
from service.dashboard_pipeline import OffsetSamples
from service.dashboard_reads import TtlCache, cold_chain_state, order_facts, warehouse_markers
from service.dashboard_stock import level_doc, low, suggestion_doc
from simulator.events import T0, order_story


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_cache_keeps_an_answer_for_its_ttl_and_computes_once_for_concurrent_callers() -> None:
    clock = Clock()
    cache = TtlCache(clock)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.05)
        return len(calls)

    threads = [threading.Thread(target=cache.get, args=("k", 5.0, compute)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and cache.get("k", 5.0, compute) == 1
    clock.t += 5.0
    assert cache.get("k", 5.0, compute) == 2 and cache.get("other", 5.0, compute) == 3


def test_offset_rates_over_the_kept_samples() -> None:
    clock = Clock()
    samples = OffsetSamples(keep_s=30, clock=clock)
    assert samples.add({"gps": 100, "dl": 5}) == {"gps": 0.0, "dl": 0.0}  # the first read: no rate yet
    clock.t += 10
    assert samples.add({"gps": 600, "dl": 5}) == {"gps": 50.0, "dl": 0.0}
    clock.t += 10
    assert samples.add({"gps": 1100, "dl": 25}) == {"gps": 50.0, "dl": 1.0}  # since the oldest kept sample
    clock.t += 25  # the first two samples are older than 30 s now
    assert samples.add({"gps": 1100, "dl": 25, "new": 7}) == {"gps": 0.0, "dl": 0.0, "new": 0.0}
    clock.t += 5
    assert samples.add({"gps": 0, "dl": 25, "new": 7})["gps"] == 0.0  # a topic re-created: never negative


def alert(rule: str, severity: str, *, driver: str | None = None, vehicle: str | None = None) -> dict[str, Any]:
    return {"alert_id": f"{rule}/vehicle/{vehicle}", "rule_id": rule, "severity": severity, "status": "OPEN",
            "driver_id": driver, "vehicle_id": vehicle}


def test_cold_chain_state_is_the_worst_open_alert_of_the_driver_or_the_van() -> None:
    assert cold_chain_state([], "DRV-1", "VAN-1") == "ok"
    assert cold_chain_state([alert("cold-chain-exposure", "INFO", vehicle="VAN-1")], "DRV-1", "VAN-1") == "warning"
    found = [alert("cold-chain-exposure", "WARNING", vehicle="VAN-1"),
             alert("cold-chain-breach", "CRITICAL", driver="DRV-1")]
    assert cold_chain_state(found, "DRV-1", "VAN-1") == "critical"
    assert cold_chain_state(found, "DRV-2", "VAN-2") == "ok"  # another van's
    assert cold_chain_state([{**found[1], "status": "RESOLVED"}], "DRV-1", "VAN-9") == "ok"


def test_warehouse_markers_from_the_shipped_fence_file() -> None:
    fences = load_fence_file().fences
    markers = warehouse_markers(fences)
    configured = {f.id: f for f in fences}
    assert {m["kind"] for m in markers} == {"WAREHOUSE", "DEPOT"}
    assert {m["id"] for m in markers} == {f.id for f in fences if f.kind in ("WAREHOUSE", "DEPOT")}
    for m in markers:
        f = configured[m["id"]]
        if f.circle is not None:
            assert (m["lat"], m["lng"]) == (f.circle[0], f.circle[1])
        else:  # the centroid lies inside the polygon's bounding box
            lats, lngs = [p[0] for p in f.polygon], [p[1] for p in f.polygon]
            assert min(lats) < m["lat"] < max(lats) and min(lngs) < m["lng"] < max(lngs)
        assert dm.Warehouse.model_validate(m).model_dump() == m


LEVEL = {"warehouse_id": "WH-1", "sku": "VEG-1", "unit": "KG", "on_hand": 4.0, "day": "20260601", "picked_today": 6.0,
         "short_today": 0.0, "received_today": 0.0, "returned_today": 0.0, "reorder_point": 10.0, "updated_at": T0}
SUGGESTION = {"suggestion_id": "WH-1/VEG-1@e1", "stock_key": "WH-1/VEG-1", "warehouse_id": "WH-1", "sku": "VEG-1",
              "unit": "KG", "reason": "BELOW_REORDER_POINT", "decided_at": T0, "on_hand": 4.0, "forecast_daily": 3.0,
              "forecast_std": 1.0, "history_days": 14, "service_level": 0.95, "lead_time_days": 2.0,
              "lead_time_demand": 6.0, "safety_stock": 4.0, "reorder_point": 10.0, "order_up_to": 16.0,
              "suggested_quantity": 12.0, "rule_version": 1, "policy": "rop"}


def test_stock_documents() -> None:
    assert low(LEVEL) and not low({**LEVEL, "on_hand": 10.0}) and not low({**LEVEL, "reorder_point": None})
    doc = level_doc(LEVEL)
    assert doc["onHand"] == 4.0 and doc["low"] is True and doc["updatedAt"] == iso(T0)
    assert dm.StockLevel.model_validate(doc).model_dump() == doc
    s = suggestion_doc(SUGGESTION)
    assert (s["quantity"], s["reason"], s["decidedAt"]) == (12.0, "BELOW_REORDER_POINT", iso(T0))
    assert dm.StockSuggestion.model_validate(s).model_dump() == s


def test_kpi_points_and_current_figures() -> None:
    row = {"time": T0, "orders": 12, "fulfilment_rate": 0.9, "on_time_rate": None, "delivery_p50_ms": 600000,
           "delivery_p90_ms": 900000.0, "loss_rate": 0.01}
    p = point(row)
    assert p == {"atMs": T0, "orders": 12, "fulfilment": 0.9, "onTimeRate": None, "deliveryP50Ms": 600000,
                 "deliveryP90Ms": 900000, "lossRate": 0.01}
    assert dm.KpiPoint.model_validate(p).model_dump() == p
    assert point({"time": T0})["orders"] == 0
    assert current_doc(None) is None
    assert current_doc({"fulfilment_rate": 0.5, "delivery_p50_ms": 1, "dimension_id": "all"}) == {
        "fulfilmentRate": 0.5, "deliveryP50Ms": 1, "dimensionId": "all"}


def test_order_facts_keep_the_marker_lines_and_durations() -> None:
    (state,) = fold_all(order_story("KLD1", T0))[0].values()
    view = state["view"]
    facts = order_facts(view)
    assert (facts["status"], facts["warehouseId"], facts["customerId"]) == ("SIGNED", view["warehouse_id"],
                                                                            view["customer_id"])
    assert (facts["lat"], facts["lng"]) == (view["destination"]["lat"], view["destination"]["lng"])
    assert facts["driverId"] == view["driver"]["driver_id"]
    assert [sku for sku, _, _ in facts["lines"]] == [ln["sku"] for ln in view["lines"]]
    assert [short for *_, short in facts["lines"]] == [ln["short"] for ln in view["lines"]]
    assert len(facts["durations"]) == 4


class Hashes:
    """``hset`` / ``hmget`` / ``exists`` on dicts; ``pipeline()`` queues the calls until ``execute``."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def hset(self, key: str, mapping: dict[str, Any]) -> None:
        self.data.setdefault(key, {}).update({k: str(v).encode() for k, v in mapping.items()})

    def hmget(self, key: str, *fields: str) -> list[Any]:
        return [self.data.get(key, {}).get(f) for f in fields]

    def exists(self, key: str) -> int:
        return int(key in self.data)

    def pipeline(self, transaction: bool = True) -> Any:
        client, calls = self, []

        class Pipe:
            def hmget(self, *a: Any) -> None:
                calls.append(lambda: client.hmget(*a))

            def execute(self) -> list[Any]:
                return [c() for c in calls]

        return Pipe()


def test_acknowledgements_are_merged_into_alerts() -> None:
    from service.alert_acks import acknowledge, acknowledgements, alert_exists, with_acknowledgements

    r = Hashes()
    acknowledge(r, "p", "late/order/KL1", by="u-ops", role="operator", at_ms=T0, note=None)
    assert r.data["p:alert-ack:late/order/KL1"] == {"by": b"u-ops", "role": b"operator", "at": str(T0).encode(),
                                                    "note": b""}
    acks = acknowledgements(r, "p", ["late/order/KL1", "stuck/order/KL2"])
    assert acks == {"late/order/KL1": {"by": "u-ops", "at": iso(T0)}}
    merged = with_acknowledgements([{"alert_id": "late/order/KL1"}, {"alert_id": "stuck/order/KL2"}], acks)
    assert [a["acknowledged"] for a in merged] == [{"by": "u-ops", "at": iso(T0)}, None]
    assert acknowledgements(r, "p", []) == {} and not alert_exists(r, "p", "late/order/KL1")
