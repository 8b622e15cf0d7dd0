"""GeofenceProjection through ``fold_batch``: decoding, one index query per batch, offsets, dead letters."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from projections.geofence_step import GeofenceProjection
from projections.keyed_batch import fold_batch
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from tests.unit.projections.geofence_builders import CTX, INDEX, WH, east_of, ping, van_order

GPS, VANS = "kuailv.gps.v1", "kuailv.van-orders.v1"
CODEC = AvroCodec(epoch_ms=True)


class CountingIndex:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def classify(self, lats: list[float], lngs: list[float]) -> Any:
        self.calls.append(len(lats))
        return INDEX.classify(lats, lngs)


def records(values: list[dict[str, Any]], start: int = 0) -> list[SourceRecord]:
    out = []
    for n, v in enumerate(values):
        topic, kind = (GPS, "GpsPing") if "lat" in v else (VANS, "VanOrder")
        out.append(SourceRecord(topic, 0, start + n, v["driver_id"].encode(), CODEC.encode(kind, v), None))
    return out


def projection(index: Any = INDEX) -> GeofenceProjection:
    return GeofenceProjection(CODEC, index, CTX, {GPS: "GpsPing", VANS: "VanOrder"})


def pings(metres: list[float], driver: str = "DRV-1", start: int = 0) -> list[dict[str, Any]]:
    return [ping(start + n, *east_of(WH, m), driver=driver, eid=f"{driver}-{start + n}") for n, m in enumerate(metres)]


def test_one_index_query_per_batch_for_all_drivers() -> None:
    index = CountingIndex()
    batch = records(pings([900, 100, 100, 100, 100, 100, 100]) + pings([100] * 6, driver="DRV-2"))
    result = fold_batch(projection(index), batch, lambda keys: {})
    assert index.calls == [13]
    kinds = {k: [t["kind"] for kind, t in f.outputs if kind == "transition"] for k, f in result.folded.items()}
    assert kinds == {"DRV-1": ["ENTER"], "DRV-2": ["ENTER"]}
    assert not any(kind == "status" for f in result.folded.values() for kind, _ in f.outputs)  # status_ms None
    assert result.counts.applied == 13


def test_driver_status_for_the_fleet_view_every_interval_of_released_time_and_on_load_changes() -> None:
    ctx = dataclasses.replace(CTX, status_ms=30_000)
    p = GeofenceProjection(CODEC, INDEX, ctx, {GPS: "GpsPing", VANS: "VanOrder"})
    batch = records(pings([900.0 + 10 * n for n in range(200)]))  # 200 pings, one per second
    out = fold_batch(p, batch, lambda keys: {}).folded["DRV-1"].outputs
    statuses = [s for kind, s in out if kind == "status"]
    released_at = [s["at"] for s in statuses]
    assert len(statuses) >= 5 and all(b - a >= 30_000 for a, b in itertools.pairwise(released_at))
    assert statuses[0]["load_kg"] == 0 and statuses[0]["orders_on_board"] == [] and statuses[0]["vehicle_id"]


def test_redelivered_records_are_skipped_by_offset() -> None:
    p = projection()
    batch = records(pings([900, 100, 100, 100, 100, 100, 100, 100]))
    first = fold_batch(p, batch, lambda keys: {})
    state = first.folded["DRV-1"].state
    again = fold_batch(p, batch, lambda keys: {"DRV-1": state})
    f = again.folded["DRV-1"]
    assert f.outputs == [] and f.duplicates == len(batch) and not f.changed
    assert again.dead_letters == []


def test_late_ping_and_bad_records_become_dead_letters() -> None:
    p = projection()
    first = fold_batch(p, records(pings([100] * 10)), lambda keys: {})
    state = first.folded["DRV-1"].state
    late = ping(50, *WH, at=state["released"] - 60_000, eid="late-1")
    wrong_key = SourceRecord(GPS, 0, 101, b"DRV-9", CODEC.encode("GpsPing", ping(51, *WH, eid="x")), None)
    garbage = SourceRecord(GPS, 0, 102, b"DRV-1", b"\x00\x00\x00\x00\x65\x01", None)
    impossible = ping(52, 0.0, 0.0, eid="zero")
    batch = [*records([late], start=100), wrong_key, garbage, *records([impossible], start=103)]
    result = fold_batch(p, batch, lambda keys: {"DRV-1": state})
    reasons = sorted(d.reason_code for d in result.dead_letters)
    assert reasons == ["AVRO_DECODE_FAILED", "INVALID_EVENT", "INVALID_EVENT", "LATE_EVENT"]
    late_dl = next(d for d in result.dead_letters if d.reason_code == "LATE_EVENT")
    assert late_dl.event_id == "late-1" and late_dl.source.offset == 100
    assert result.folded["DRV-1"].state["late"] == 1


def test_driver_nearby_notice_once_per_dispatch_resolved_on_leaving() -> None:
    from config.alert_rules import load_rules_file
    from tests.unit.projections.geofence_builders import CUSTOMER

    p = GeofenceProjection(CODEC, INDEX, CTX, {GPS: "GpsPing", VANS: "VanOrder"}, load_rules_file())
    near = [ping(n, *CUSTOMER, eid=f"n{n}") for n in range(6)]
    away = [ping(6 + n, *east_of(CUSTOMER, 2000), eid=f"a{n}") for n in range(6)]
    back = [ping(12 + n, *CUSTOMER, eid=f"b{n}") for n in range(6)]
    again = [ping(18 + n, *east_of(CUSTOMER, 2000), eid=f"c{n}") for n in range(6)]
    state: dict | None = None
    alerts: list[dict] = []
    offset = 0
    for chunk in ([van_order(at=0)], near, away, back, again):
        result = fold_batch(p, records(chunk, start=offset), lambda keys, s=state: {"DRV-1": s} if s else {})
        offset += len(chunk)
        f = result.folded["DRV-1"]
        state = f.state
        alerts += [a for kind, a in f.outputs if kind == "alert"]
    assert [(a["alert_id"], a["status"]) for a in alerts] == [
        ("driver-nearby/order/KL-1#1", "OPEN"), ("driver-nearby/order/KL-1#1", "RESOLVED")]
    assert alerts[0]["severity"] == "INFO" and alerts[0]["audience"] == ["CUSTOMER", "MERCHANT"]
    assert "within 150 m" in alerts[0]["message"] and alerts[0]["order_id"] == "KL-1"
    assert str(alerts[1]["resolved_at"]) == alerts[1]["evidence"]["left_at"]


def test_van_order_on_the_same_partition_makes_a_customer_site() -> None:
    p = projection()
    result = fold_batch(p, records([van_order(at=0), *pings([9000] * 5)], start=0), lambda keys: {})
    site = result.folded["DRV-1"].state["sites"]["KL-1"]
    assert site["state"] == "ON_BOARD" and site["dispatch"] == 1 and site["version"] == 7


def test_gps_silence_with_orders_on_board_opens_at_the_limit_and_resolves_on_the_next_ping() -> None:
    from config.alert_rules import load_rules_file
    from projections.geofence import GeoContext
    from projections.geofence_step import fire_silences
    from tests.unit.projections.geofence_builders import FENCES, T0

    rules = load_rules_file()
    ctx = GeoContext(FENCES, allowed_lateness_ms=30_000, silence_ms=10 * 60_000)
    p = GeofenceProjection(CODEC, INDEX, ctx, {GPS: "GpsPing", VANS: "VanOrder"}, rules)
    before = [ping(n, *east_of(WH, 5000 + n * 50), eid=f"s{n}") for n in range(8)]  # 70 s of pings, then quiet
    after = [ping(n, *east_of(WH, 9000 + n * 50), at=T0 + 20 * 60_000 + n * 10_000, eid=f"r{n}") for n in range(8)]
    first = fold_batch(p, records([van_order(at=T0 - 60_000), *before]), lambda keys: {})
    state = first.folded["DRV-1"].state
    due = state["silence_due"]
    assert due == T0 + 70_000 + 10 * 60_000  # the newest ping seen + 10 min

    # the engine's timer: another driver's pings move the partition's watermark past the due time
    fired, new = fire_silences({"DRV-1": state}, due, rules)
    assert [(a["alert_id"], a["status"], a["opened_at"]) for a in fired] == [
        ("gps-silent/driver/DRV-1", "OPEN", due)]
    assert fired[0]["evidence"]["orders"] == "KL-1" and new["DRV-1"]["silence_due"] is None

    # the driver pings again: resolved at that ping (and without the timer, opened then resolved: same records)
    for start in (new["DRV-1"], state):
        resumed = fold_batch(p, records(after, start=100), lambda keys, s=start: {"DRV-1": s})
        alerts = [a for kind, a in resumed.folded["DRV-1"].outputs if kind == "alert"]
        assert alerts[-1]["status"] == "RESOLVED" and alerts[-1]["opened_at"] == due
        assert alerts[-1]["resolved_at"] == T0 + 20 * 60_000


def test_stage_times_go_out_as_order_etas_and_a_redelivered_batch_repeats_none() -> None:
    """The order's tracking record: encoded with the newest OrderEta schema, the warehouse arrival in it."""
    from projections.eta import DistanceSpeedEta
    from projections.geofence import GeoContext
    from projections.van_eta import EtaSettings
    from tests.unit.projections.geofence_builders import FENCES, T0

    ctx = GeoContext(FENCES, allowed_lateness_ms=30_000, eta=EtaSettings(DistanceSpeedEta()))
    p = GeofenceProjection(CODEC, INDEX, ctx, {GPS: "GpsPing", VANS: "VanOrder"})
    batch = records([*pings([0] * 6), van_order(at=T0 + 55_000), *pings([0] * 6, start=6),
                     *pings([9000] * 6, start=12)])
    first = fold_batch(p, batch, lambda keys: {})
    f = first.folded["DRV-1"]
    etas = [e for kind, e in f.outputs if kind == "eta"]
    assert etas and all(e["arrived_warehouse_at"] == T0 for e in etas)
    framed = CODEC.encode("OrderEta", etas[0])
    decoded = CODEC.decode(framed)
    assert decoded.schema_id == CODEC.catalog.latest("OrderEta").id == 703
    assert decoded.value == etas[0]

    again = fold_batch(p, batch, lambda keys: {"DRV-1": f.state})
    assert again.folded["DRV-1"].outputs == [] and not again.folded["DRV-1"].changed
