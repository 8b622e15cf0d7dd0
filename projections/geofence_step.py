"""Geofences as a ``projections.keyed_batch`` projection: GPS + VanOrder (+ RoadConditions) in, transitions out.

Pure. Keyed by driver: ``kuailv.gps.v1``, ``kuailv.van-orders.v1`` and ``kuailv.road-conditions.v1`` are
co-partitioned by driver id (the conditions are model features of the ETA and delay risk).
Outputs ``(kind, record)``: ``transition`` (GeofenceTransition), ``eta`` (OrderEta), ``alert``
(notices, gps-silent) and ``status`` (DriverStatus for the fleet view, ``projections.fleet``).
``prepare`` classifies every GPS point of the batch against the configured fences in one
``FenceIndex`` query (the vectorised part); ``fold`` runs ``projections.geofence.step`` per driver.

Re-delivery (at-least-once): the state remembers the last offset applied per source partition,
and a record at or below it is skipped as a duplicate, so a batch replayed after a crash
cannot count its pings as late or emit a transition twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from projections import silence
from projections.alert_rules import RuleSet
from projections.alerts import AlertChange, alert_id, apply_changes
from projections.fence_index import FenceIndex
from projections.geofence import GeoContext, on_board, step
from projections.keyed_batch import BatchResult, Folded, Keyed, decode_checked, skip_applied
from projections.order_events import InvalidEvent
from projections.telemetry import check_ids, validate_gps
from schemas.dead_letters import DeadLetter, SourceRecord

Input = tuple[str, dict[str, Any], Any]  # (record type, value, fence hits or None)


def validate_van_order(v: Mapping[str, Any]) -> None:
    check_ids(v, "driver_id", "vehicle_id", "order_id")
    d = v["destination"]
    if not (-90.0 <= d["lat"] <= 90.0 and -180.0 <= d["lng"] <= 180.0):
        raise InvalidEvent(f"order {v['order_id']}: destination ({d['lat']}, {d['lng']}) is not a coordinate")


def validate_conditions(v: Mapping[str, Any]) -> None:
    check_ids(v, "driver_id", "vehicle_id")
    if not (math.isfinite(v["traffic_index"]) and v["traffic_index"] > 0):
        raise InvalidEvent(f"road conditions {v['event_id']}: traffic_index {v['traffic_index']} is not > 0")
    if not (math.isfinite(v["rain_mm_h"]) and v["rain_mm_h"] >= 0):
        raise InvalidEvent(f"road conditions {v['event_id']}: rain_mm_h {v['rain_mm_h']} is not >= 0")


class GeofenceProjection:
    name = "geofences"

    def __init__(self, codec: Any, index: FenceIndex, ctx: GeoContext, kinds: Mapping[str, str],
                 rules: RuleSet | None = None) -> None:
        self.codec = codec  # schemas.codec.AvroCodec (epoch_ms=True)
        self.index = index
        self.ctx = ctx
        self.kinds = kinds  # topic -> record type, e.g. {"kuailv.gps.v1": "GpsPing"}
        self.notice_rules = {kind: rules.by_kind(kind) for kind in NOTICES} if rules else {}
        self.rules = rules
        self._validate = {"GpsPing": validate_gps, "VanOrder": validate_van_order,
                          "RoadConditions": validate_conditions}

    def decode(self, rec: SourceRecord) -> Keyed[Input] | DeadLetter:
        expected = self.kinds[rec.topic]
        decoded = decode_checked(self.codec, rec, expected, "driver_id", self._validate[expected])
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(decoded.value["driver_id"], (decoded.record_type, decoded.value, None))

    def prepare(self, by_key: dict[str, list[tuple[SourceRecord, Input]]]) -> None:
        lats: list[float] = []
        lngs: list[float] = []
        for items in by_key.values():
            for _, (record_type, value, _) in items:
                if record_type == "GpsPing":
                    lats.append(value["lat"])
                    lngs.append(value["lng"])
        if not lats:
            return
        hits = iter(self.index.classify(lats, lngs))
        for items in by_key.values():
            for i, (rec, (record_type, value, _)) in enumerate(items):
                if record_type == "GpsPing":
                    items[i] = (rec, (record_type, value, next(hits)))

    def fold(self, key: str, state: dict[str, Any] | None, items: Sequence[tuple[SourceRecord, Input]]) -> Folded:
        positions, fresh, duplicates = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=duplicates)
        out = step(state, [ev for _, ev in fresh], self.ctx)
        out.state["pos"] = positions
        dead = [DeadLetter(fresh[i][0], "LATE_EVENT", reason, fresh[i][1][1].get("event_id"), fresh[i][1][0])
                for i, reason in out.late]
        outputs: list[tuple[str, dict[str, Any]]] = [("transition", t) for t in out.transitions]
        outputs += [("eta", e) for e in out.etas]
        outputs += [("status", s) for s in out.statuses]
        if self.rules is not None:
            changes = self._notices(out.notices) + self._silences(key, out.state, out.silences)
            if changes:
                outputs += [("alert", a) for a in _apply(out.state, changes)]
            out.state["silence_due"] = silence_timer(key, out.state, self.rules)
        return Folded(out.state, changed=True, published=bool(outputs), outputs=outputs,
                      dead_letters=dead, applied=out.applied, duplicates=duplicates + out.duplicates)

    def _notices(self, notices: list[tuple[str, bool, dict[str, Any]]]) -> list[AlertChange]:
        """Notices to the customer about an order on the van, as INFO alerts (subject
        ``order/<id>#<dispatch>``: once per order and delivery attempt): "driver nearby" from the
        van entering the customer site to leaving it; "arriving soon" from the ETA crossing the
        threshold to the van entering the site."""
        assert self.rules is not None
        changes = []
        for kind, opening, t in notices:
            rule = self.notice_rules.get(kind)
            if rule is None:
                continue
            subject = {"order_id": t["order_id"], "driver_id": t.get("driver_id"), "vehicle_id": t.get("vehicle_id"),
                       "customer_id": t["customer_id"], "warehouse_id": t["warehouse_id"]}
            evidence = {"dispatch_count": str(t["dispatch"])}
            if kind == "driver-nearby":
                evidence.update(fence_id=t["fence_id"], entered_at=str(t["at"] if opening else t["entered_at"]),
                                enter_m=f"{self.ctx.fences.customer_sites.enter_m:g}")
                if not opening:
                    evidence["left_at"] = str(t["at"])
            elif kind == "likely-late":
                if opening:
                    evidence.update(late_risk=f"{t['late_risk']:.2f}", eta=str(t["eta"]),
                                    window_end=str(t["window_end"]), estimated_at=str(t["at"]),
                                    estimator=t["estimator"])
                else:
                    evidence.update(cleared_at=str(t["at"]), cleared_by=t["by"])
            elif opening:
                evidence.update(eta=str(t["eta"]), estimated_at=str(t["at"]), distance_m=f"{t['distance_m']:.0f}")
            else:
                evidence["cleared_at"] = str(t["at"])
            location = (t["lat"], t["lng"]) if "lat" in t else None
            changes.append(self.rules.change(rule, opening=opening, at=t["at"], subject_kind="order",
                                             subject_id=f"{t['order_id']}#{t['dispatch']}", subject=subject,
                                             evidence=evidence, location=location))
        return changes

    def _silences(self, driver: str, state: dict[str, Any], events: list[dict[str, Any]]) -> list[AlertChange]:
        """gps-silent decided from the driver's own stream (``projections.geofence``): opened at the last
        ping + the limit when nothing came in between with orders on board, resolved by the next ping or
        by the last order leaving the van. The engine's watermark timer (``fire_silence``) may have opened
        it already; the records are the same either way."""
        assert self.rules is not None
        changes: list[AlertChange | None] = []
        for e in events:
            if e["open"]:
                due = silence.silence_due(e["last"], self.rules)
                changes.append(silence.silence_fired(driver, e["last"], due or 0, e["orders"], self.rules,
                                                     vehicle_id=e["vehicle_id"], last_location=(e["lat"], e["lng"])))
            elif e["by"] == "ping":
                changes.append(silence.resumed(driver, e["at"], self.rules, vehicle_id=e["vehicle_id"]))
            else:
                changes.append(silence.unloaded(driver, e["at"], self.rules, vehicle_id=e["vehicle_id"]))
        return [c for c in changes if c is not None]


NOTICES = ("driver-nearby", "arriving-soon", "likely-late")


def _apply(state: dict[str, Any], changes: list[AlertChange]) -> list[dict[str, Any]]:
    """Apply to the driver's alert book. A resolved "driver nearby" or "arriving soon" is forgotten (it never
    re-opens: its subject has the dispatch in it); a resolved "likely late" is kept while its order is on the
    van, because the risk may rise again and re-open it with occurrences + 1 (whether or not the resolve and the
    re-open fall in one batch); a resolved gps-silent is kept so a new silence re-opens it likewise."""
    book = dict(state.get("alerts") or {})
    records = apply_changes(book, changes)
    sites = state.get("sites") or {}
    state["alerts"] = {k: v for k, v in book.items() if v["status"] == "OPEN" or v["rule_id"] not in NOTICES
                       or (v["rule_id"] == "likely-late" and v.get("order_id") in sites)}
    return records


def silence_timer(driver: str, state: dict[str, Any], rules: RuleSet) -> int | None:
    """When the driver's silence would reach the gps-silent limit (from the newest ping seen), while
    orders are on board and no silence alert is open; None otherwise."""
    if state.get("clock") is None or state.get("silent_since") is not None or not on_board(state):
        return None
    alert = (state.get("alerts") or {}).get(alert_id("gps-silent", "driver", driver))
    if alert is not None and alert["status"] == "OPEN":
        return None
    return silence.silence_due(state["clock"], rules)


def fire_silence(driver: str, state: dict[str, Any], watermark: int, rules: RuleSet) -> list[dict[str, Any]]:
    """The engine's timer: the GPS partition's watermark passed the driver's silence due time (no ping for
    the limit while orders are on board). Mutates ``state`` (a private copy); returns alert records."""
    due = state.get("silence_due")
    if due is None or due > watermark:
        return []
    state["silence_due"] = None
    state["silent_since"] = state["clock"]  # the driver's own stream resolves it (next ping, or unloaded)
    lat, lng, vehicle = state["clock_fix"]  # the newest ping: the last one before the silence
    change = silence.silence_fired(driver, state["clock"], due, on_board(state), rules, vehicle_id=vehicle,
                                   last_location=(lat, lng))
    return _apply(state, [change]) if change is not None else []


def gps_watermarks(result: BatchResult[dict[str, Any]], watermarks: Mapping[str, int], lateness_ms: int,
                   topic: str) -> dict[str, int]:
    """The GPS partitions (``"topic:partition"``, the drivers' partition in both co-partitioned inputs)
    whose event-time watermark the batch moves: the newest ping seen minus ``lateness_ms``."""
    moved: dict[str, int] = {}
    low = -(2**62)
    for key, f in result.folded.items():
        clock = (f.state or {}).get("clock") if f.changed else None
        if clock is None:
            continue
        where = f"{topic}:{result.partitions[key][1]}"
        mark = clock - lateness_ms
        if mark > max(watermarks.get(where, low), moved.get(where, low)):
            moved[where] = mark
    return moved


def fire_silences(states: Mapping[str, dict[str, Any]], watermark: int, rules: RuleSet
                  ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``fire_silence`` for every driver of ``states`` due by ``watermark`` (sorted, so every engine
    publishes in the same order); inputs are not modified. Returns records and the new states."""
    records: list[dict[str, Any]] = []
    new: dict[str, dict[str, Any]] = {}
    for driver in sorted(states):
        state = states[driver]
        due = state.get("silence_due")
        if due is None or due > watermark:
            continue
        state = {**state, "alerts": dict(state.get("alerts") or {})}
        records += fire_silence(driver, state, watermark, rules)
        new[driver] = state
    return records, new
