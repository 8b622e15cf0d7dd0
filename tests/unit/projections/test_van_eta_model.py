"""What a learnt estimator sees inside the driver fold, and what its delay risk does there.

A scripted estimator (risk by call, recorded snapshots) stands in for ``models.learnt_eta.LearntEta``:
the fold must hand it the road conditions released by the ping's time, the load, the windows and the
driver's pace; carry ``late_risk`` into the OrderEta records; open "likely late" at the open threshold,
resolve it with hysteresis or at the door; and follow the route planner's stop order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.eta import DistanceSpeedEta, Eta, Stop, VanSnapshot
from projections.geofence import GeoContext, step
from projections.van_eta import EtaSettings
from tests.unit.projections.geofence_builders import CUSTOMER, FENCES, MIN, T0, S, east_of, inputs, ping, van_order


class Scripted:
    """The baseline's ETAs with a late risk from ``risks`` (one per call, the last repeats)."""

    def __init__(self, risks: Sequence[float]) -> None:
        self.risks = list(risks)
        self.calls: list[tuple[VanSnapshot, tuple[Stop, ...]]] = []
        self.base = DistanceSpeedEta()

    def estimate(self, van: VanSnapshot, stops: Sequence[Stop]) -> list[Eta]:
        risk = self.risks[min(len(self.calls), len(self.risks) - 1)]
        self.calls.append((van, tuple(stops)))
        return [Eta(e.order_id, e.eta, e.distance_m, e.stops_before, late_risk=risk)
                for e in self.base.estimate(van, stops)]


def ctx(estimator: Any, **kw: Any) -> GeoContext:
    return GeoContext(FENCES, allowed_lateness_ms=30 * S,
                      eta=EtaSettings(estimator, name="scripted/1", soon_ms=None, likely_late=(0.7, 0.4), **kw))


def drive(metres: list[float], start: int = 0) -> list[dict[str, Any]]:
    return [ping(start + n, *east_of(CUSTOMER, m), at=T0 + (start + n) * 10 * S, eid=f"p{start + n}")
            for n, m in enumerate(metres)]


def conditions(at: int, traffic: float, rain: float = 0.0, eid: str = "c1") -> dict[str, Any]:
    return {"event_id": eid, "driver_id": "DRV-1", "vehicle_id": "VAN-1", "event_time": at, "producer": "test",
            "traffic_index": traffic, "rain_mm_h": rain, "temperature_c": 10.0}


def fold(records: list[dict[str, Any]], c: GeoContext) -> Any:
    """One ``step`` over ``records`` in this arrival order (conditions typed as RoadConditions)."""
    others = iter(inputs([r for r in records if "traffic_index" not in r]))
    return step(None, [("RoadConditions", r, None) if "traffic_index" in r else next(others) for r in records], c)


def test_the_estimator_sees_conditions_load_windows_and_stops_released_by_the_ping() -> None:
    est = Scripted([0.1])
    records = [van_order(at=T0 - MIN), conditions(T0 - 30 * S, 1.8, 4.0), *drive([9000 - 100 * n for n in range(12)]),
               conditions(T0 + 100 * S, 1.2, 0.0, eid="c2"), *drive([7800 - 100 * n for n in range(12)], start=12)]
    fold(records, ctx(est))
    assert est.calls
    first_van, first_stops = est.calls[0]
    assert (first_van.traffic_index, first_van.rain_mm_h) == (1.8, 4.0)  # the newer report is not released yet
    assert first_van.load_kg == 40.0 and first_van.stops_total == 1 and first_van.driver_pace is None
    assert first_stops[0].window_end == T0 + 60 * MIN and first_stops[0].kg == 40.0
    assert first_stops[0].dispatched_at == T0 - MIN
    later = [van for van, _ in est.calls if van.at >= T0 + 100 * S + 30 * S]
    assert later and all((v.traffic_index, v.rain_mm_h) == (1.2, 0.0) for v in later)


def test_a_late_conditions_report_never_replaces_a_newer_one() -> None:
    est = Scripted([0.1])
    records = [van_order(at=T0 - MIN), conditions(T0, 1.5, eid="new"), *drive([9000 - 100 * n for n in range(20)]),
               conditions(T0 - 10 * MIN, 3.0, eid="old")]  # arrives last, far behind the watermark
    out = fold(records, ctx(est))
    assert out.state["cond"][:2] == [1.5, 0.0]


def test_risk_goes_out_with_the_eta_and_likely_late_opens_once_and_resolves_below_the_lower_threshold() -> None:
    est = Scripted([0.2, 0.75, 0.8, 0.6, 0.5, 0.3, 0.2])  # crosses 0.7 up, stays above 0.4, falls below it
    out = fold([van_order(at=T0 - MIN), *drive([12_000 - 50 * n for n in range(30)])], ctx(est))
    assert [e["late_risk"] for e in out.etas][:2] == [0.2, 0.75]
    assert all(e["window_end"] == T0 + 60 * MIN and e["estimator"] == "scripted/1" for e in out.etas)
    late = [(opening, facts) for kind, opening, facts in out.notices if kind == "likely-late"]
    assert [o for o, _ in late] == [True, False]
    opened, resolved = late[0][1], late[1][1]
    assert opened["late_risk"] == 0.75 and opened["window_end"] == T0 + 60 * MIN and opened["estimator"] == "scripted/1"
    assert resolved["by"] == "risk" and resolved["at"] > opened["at"]


def test_likely_late_resolves_at_the_door_and_the_leg_sets_the_drivers_pace() -> None:
    est = Scripted([0.9])
    approach = drive([3000 - 100 * n for n in range(29)] + [50] * 8)
    out = fold([van_order(at=T0 - MIN), *approach], ctx(est))
    late = [(opening, facts.get("by")) for kind, opening, facts in out.notices if kind == "likely-late"]
    assert late == [(True, None), (False, "arrived")]
    assert out.state["pace"] is not None and 0.25 <= out.state["pace"] <= 6.0


def test_no_likely_late_notices_without_a_learnt_risk() -> None:
    out = fold([van_order(at=T0 - MIN), *drive([12_000 - 50 * n for n in range(30)])], ctx(DistanceSpeedEta()))
    assert out.etas and all(e["late_risk"] is None for e in out.etas)
    assert not [k for k, _, _ in out.notices if k == "likely-late"]


def test_the_planner_orders_the_stops_and_the_driver_status_carries_the_order() -> None:
    far, near = east_of(CUSTOMER, 500), east_of(CUSTOMER, 6000)
    asked: list[list[str]] = []

    def planner(lat: float, lng: float, at: int, stops: Sequence[Stop]) -> list[str]:
        asked.append(sorted(s.order_id for s in stops))
        return sorted((s.order_id for s in stops), reverse=True)  # KL-B first, whatever the distance

    c = GeoContext(FENCES, allowed_lateness_ms=30 * S, status_ms=MIN,
                   eta=EtaSettings(DistanceSpeedEta(), soon_ms=None, planner=planner))
    records = [van_order(at=T0 - MIN, order_id="KL-A", dest=near), van_order(at=T0 - MIN, order_id="KL-B", dest=far),
               *drive([9000 - 20 * n for n in range(20)])]
    out = fold(records, c)
    assert asked == [["KL-A", "KL-B"]]  # once: the route is kept until the stops change
    assert out.state["route"] == ["KL-B", "KL-A"]
    firsts = {e["order_id"]: e["stops_before"] for e in out.etas}
    assert firsts == {"KL-B": 0, "KL-A": 1}
    assert out.statuses and out.statuses[-1]["stop_order"] == ["KL-B", "KL-A"]


def test_a_likely_late_that_reopens_counts_its_occurrences_whatever_the_batching() -> None:
    """Open, resolve below 0.4, open again: occurrences 2, in one step or ping by ping."""
    from config.alert_rules import load_rules_file
    from config.settings import load as load_settings
    from projections.fence_index import FenceIndex
    from projections.geofence_step import GeofenceProjection
    from projections.keyed_batch import fold_batch
    from schemas.codec import AvroCodec
    from schemas.dead_letters import SourceRecord
    from streams.runtime.keyed_states import CachedStates

    codec = AvroCodec(epoch_ms=True)
    rules = load_rules_file(load_settings().alert_rules_file)
    records = [van_order(at=T0 - MIN), *drive([12_000 - 50 * n for n in range(40)])]
    topics = {True: "kuailv.gps.v1", False: "kuailv.van-orders.v1"}
    source = [SourceRecord(topics["lat" in r], 0, i, b"DRV-1", codec.encode("GpsPing" if "lat" in r else "VanOrder", r),
                           r["event_time"]) for i, r in enumerate(records)]

    def alerts(batch: int) -> list[dict[str, Any]]:
        est = Scripted([0.8, 0.8, 0.3, 0.3, 0.9])
        c = ctx(est)
        projection = GeofenceProjection(codec, FenceIndex(c.fences), c, {"kuailv.gps.v1": "GpsPing",
                                                                         "kuailv.van-orders.v1": "VanOrder"}, rules)
        states: CachedStates[dict[str, Any]] = CachedStates(lambda keys: {}, 100)
        out: list[dict[str, Any]] = []
        for i in range(0, len(source), batch):
            result = fold_batch(projection, source[i:i + batch], states)
            for key, f in result.folded.items():
                out += [v for kind, v in f.outputs if kind == "alert" and v["rule_id"] == "likely-late"]
                if f.changed and f.state is not None:
                    states.put(key, f.state, result.partitions[key])
        return out

    whole, one_by_one = alerts(len(source)), alerts(1)
    assert [(a["status"], a["occurrences"]) for a in whole] == [("OPEN", 1), ("RESOLVED", 1), ("OPEN", 2)]
    assert whole == one_by_one
