"""Geofences as a ``projections.keyed_batch`` projection: GPS + VanOrder in, transitions out. Pure.

Keyed by driver: ``kuailv.gps.v1`` and ``kuailv.van-orders.v1`` are co-partitioned by driver id.
``prepare`` classifies every GPS point of the batch against the configured fences in one
``FenceIndex`` query (the vectorised part); ``fold`` runs ``projections.geofence.step`` per driver.

Re-delivery (at-least-once): the state remembers the last offset applied per source partition,
and a record at or below it is skipped as a duplicate, so a batch replayed after a crash
cannot count its pings as late or emit a transition twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.alert_rules import RuleSet
from projections.alerts import apply_changes
from projections.fence_index import FenceIndex
from projections.geofence import GeoContext, step
from projections.keyed_batch import Folded, Keyed
from projections.order_events import InvalidEvent
from projections.telemetry import _check_ids, validate_gps
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.errors import CodecError

Input = tuple[str, dict[str, Any], Any]  # (record type, value, fence hits or None)


def validate_van_order(v: Mapping[str, Any]) -> None:
    _check_ids(v, "driver_id", "vehicle_id", "order_id")
    d = v["destination"]
    if not (-90.0 <= d["lat"] <= 90.0 and -180.0 <= d["lng"] <= 180.0):
        raise InvalidEvent(f"order {v['order_id']}: destination ({d['lat']}, {d['lng']}) is not a coordinate")


class GeofenceProjection:
    name = "geofences"

    def __init__(self, codec: Any, index: FenceIndex, ctx: GeoContext, kinds: Mapping[str, str],
                 rules: RuleSet | None = None) -> None:
        self.codec = codec  # schemas.codec.AvroCodec (epoch_ms=True)
        self.index = index
        self.ctx = ctx
        self.kinds = kinds  # topic -> record type, e.g. {"kuailv.gps.v1": "GpsPing"}
        self.notice_rules = {kind: rules.by_kind(kind) for kind in ("driver-nearby", "arriving-soon")} if rules else {}
        self.rules = rules
        self._validate = {"GpsPing": validate_gps, "VanOrder": validate_van_order}

    def decode(self, rec: SourceRecord) -> Keyed[Input] | DeadLetter:
        expected = self.kinds[rec.topic]
        try:
            decoded = self.codec.decode(rec.value)
        except CodecError as exc:
            return DeadLetter(rec, exc.reason_code, str(exc), schema_id=exc.schema_id)
        value = decoded.value
        if decoded.record_type != expected:
            return DeadLetter(rec, "UNEXPECTED_RECORD_TYPE", f"{decoded.record_type} does not belong on {rec.topic}",
                              value.get("event_id"), decoded.record_type, decoded.schema_id)
        key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        try:
            if key != value["driver_id"]:
                raise InvalidEvent(f"message key {key!r} is not the driver_id {value['driver_id']!r}")
            self._validate[expected](value)
        except (InvalidEvent, KeyError, TypeError) as exc:
            return DeadLetter(rec, "INVALID_EVENT", str(exc), value.get("event_id"), decoded.record_type,
                              decoded.schema_id)
        return Keyed(key, (decoded.record_type, value, None))

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
        positions: dict[str, int] = dict(state["pos"]) if state else {}
        fresh: list[tuple[SourceRecord, Input]] = []
        duplicates = 0
        for rec, ev in items:
            where = f"{rec.topic}:{rec.partition}"
            if rec.offset <= positions.get(where, -1):
                duplicates += 1
                continue
            positions[where] = rec.offset
            fresh.append((rec, ev))
        if not fresh:
            return Folded(state, duplicates=duplicates)
        out = step(state, [ev for _, ev in fresh], self.ctx)
        out.state["pos"] = positions
        dead = [DeadLetter(fresh[i][0], "LATE_EVENT", reason, fresh[i][1][1].get("event_id"), fresh[i][1][0])
                for i, reason in out.late]
        outputs: list[tuple[str, dict[str, Any]]] = [("transition", t) for t in out.transitions]
        outputs += [("eta", e) for e in out.etas]
        if out.notices and self.rules is not None:
            outputs += [("alert", a) for a in self._notices(out.state, out.notices)]
        return Folded(out.state, changed=True, published=bool(outputs), outputs=outputs,
                      dead_letters=dead, applied=out.applied, duplicates=duplicates + out.duplicates)

    def _notices(self, state: dict[str, Any], notices: list[tuple[str, bool, dict[str, Any]]]
                 ) -> list[dict[str, Any]]:
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
            elif opening:
                evidence.update(eta=str(t["eta"]), estimated_at=str(t["at"]), distance_m=f"{t['distance_m']:.0f}")
            else:
                evidence["cleared_at"] = str(t["at"])
            location = (t["lat"], t["lng"]) if "lat" in t else None
            changes.append(self.rules.change(rule, opening=opening, at=t["at"], subject_kind="order",
                                             subject_id=f"{t['order_id']}#{t['dispatch']}", subject=subject,
                                             evidence=evidence, location=location))
        book = dict(state.get("alerts") or {})
        records = apply_changes(book, changes)
        state["alerts"] = {k: v for k, v in book.items() if v["status"] == "OPEN"}  # a notice never re-opens
        return records
