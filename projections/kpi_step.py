"""The three keyed projections of the KPI topology (``docs/kpis.md``). Pure: no I/O, no clock.

::

    kuailv.alerts.v1 ──(KpiExposureProjection, key alert id)──▶ kuailv.kpi-exposures.v1 (key order id)
    kuailv.order-state.v1 + kuailv.kpi-exposures.v1 ──(KpiOrderProjection, key order id)──▶
        kuailv.kpi-contributions.v1 (key window: ``<dimension>|<id>|<day>``)
    kuailv.kpi-contributions.v1 ──(KpiWindowProjection, key window)──▶ kuailv.kpis.v1 (KpiFigures)

1. **exposures**: each ``cold-chain-exposure`` alert (decided per van trip by ``projections.fleet``)
   names the trip's orders in its evidence; one ``KpiExposure`` per (alert, order), re-keyed by order
   so that it meets the order's view (both topics: key order id, same partition count);
2. **orders**: per order, the newest view (highest ``version``) and the set of exposure alerts; when
   the order's contribution or windows move, one ``KpiContribution`` per window it is in, and one with
   ``counted`` false for a window it left (a re-dispatch changes the driver), all at the new revision
   (``order_version``, ``exposures``: both only grow);
3. **windows**: per window, the latest contribution of each order (highest revision), and the figures
   computed from that set (``projections.kpis.figures``).

Every state keeps the applied offset per source partition (``skip_applied``); every step is
idempotent besides, so duplicates, re-delivery, reordering and replays give the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.keyed_batch import Folded, Keyed, decode_checked, skip_applied
from projections.kpis import contribution, figures, order_facts, parse_window_key, revision, window_keys
from schemas.dead_letters import DeadLetter, SourceRecord
from schemas.topics import ALERTS, KPI_CONTRIBUTIONS, KPI_EXPOSURES, KPIS, ORDER_STATE

EXPOSURE_RULE = "cold-chain-exposure"
# output kind -> (topic, record type, key field, event-time field): how every engine publishes a stage's outputs
OUTPUTS = {"kpi-exposure": (KPI_EXPOSURES.name, "KpiExposure", "order_id", "exposed_at"),
           "kpi-contribution": (KPI_CONTRIBUTIONS.name, "KpiContribution", "window_key", "updated_at"),
           "kpi": (KPIS.name, "KpiFigures", "window_key", "as_of")}
Output = tuple[str, dict[str, Any]]
State = dict[str, Any]


def exposure_records(alert: dict[str, Any], known: Sequence[str]) -> list[dict[str, Any]]:
    """``KpiExposure`` records of an exposure alert for the orders in its evidence not in ``known``."""
    named = sorted({o for o in (alert.get("evidence") or {}).get("orders", "").split(",") if o})
    return [{"order_id": o, "alert_id": alert["alert_id"], "vehicle_id": alert.get("vehicle_id"),
             "exposed_at": alert["opened_at"]} for o in named if o not in known]


class KpiExposureProjection:
    """Stage 1a over ``kuailv.alerts.v1``: key alert id; other rules' alerts are skipped (no state)."""

    name = "kpi-exposures"

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, rec: SourceRecord) -> Keyed[dict[str, Any] | None] | DeadLetter:
        decoded = decode_checked(self.codec, rec, "Alert", "alert_id")
        if type(decoded) is DeadLetter:
            return decoded
        value = decoded.value
        return Keyed(value["alert_id"], value if value["rule_id"] == EXPOSURE_RULE else None)

    def fold(self, key: str, state: State | None, items: Sequence[tuple[SourceRecord, Any]]) -> Folded[State]:
        items = [(rec, ev) for rec, ev in items if ev is not None]
        if not items:
            return Folded(state)
        positions, fresh, skipped = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=skipped)
        orders = list(state["orders"]) if state else []
        outputs: list[Output] = []
        for _, alert in fresh:
            new = exposure_records(alert, orders)
            orders += [r["order_id"] for r in new]
            outputs += [("kpi-exposure", r) for r in new]
        return Folded({"orders": sorted(orders), "pos": positions}, changed=True, published=bool(outputs),
                      outputs=outputs, applied=len(fresh), duplicates=skipped)


def _window_fields(key: str) -> dict[str, Any]:
    dimension, dimension_id, day = parse_window_key(key)
    return {"window_key": key, "dimension": dimension, "dimension_id": dimension_id, "day": day}


def order_outputs(before: State | None, after: State) -> list[Output]:
    """The ``KpiContribution`` records the change ``before`` -> ``after`` of one order's KPI state implies."""
    facts = after.get("facts")
    if facts is None:
        return []
    exposures = after["exposures"]
    body = contribution(facts, len(exposures), max(exposures.values()) if exposures else None)
    keys = window_keys(facts)
    old_keys = (before or {}).get("keys") or []
    if before is not None and before.get("sent") == body and old_keys == keys:
        return []
    out: list[Output] = [("kpi-contribution", {**_window_fields(k), **body}) for k in keys]
    out += [("kpi-contribution", {**_window_fields(k), **body, "counted": False}) for k in old_keys if k not in keys]
    after["keys"], after["sent"] = keys, body
    return out


class KpiOrderProjection:
    """Stage 1 over ``kuailv.order-state.v1`` + ``kuailv.kpi-exposures.v1``: key order id."""

    name = "kpi-orders"
    _TYPES = ("OrderState", "KpiExposure")

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, rec: SourceRecord) -> Keyed[tuple[str, dict[str, Any]]] | DeadLetter:
        decoded = decode_checked(self.codec, rec, self._TYPES, "order_id")
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(decoded.value["order_id"], (decoded.record_type, decoded.value))

    def fold(self, key: str, state: State | None, items: Sequence[tuple[SourceRecord, Any]]) -> Folded[State]:
        positions, fresh, skipped = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=skipped)
        new: State = {"facts": None, "exposures": {}, "keys": [], "sent": None, **(state or {}), "pos": positions}
        new["exposures"] = dict(new["exposures"])
        applied = 0
        for _, (record_type, value) in fresh:
            if record_type == "KpiExposure":
                if value["alert_id"] not in new["exposures"]:
                    new["exposures"][value["alert_id"]] = value["exposed_at"]
                    applied += 1
            elif new["facts"] is None or value["version"] > new["facts"]["order_version"]:
                new["facts"] = order_facts(value)
                applied += 1
        outputs = order_outputs(state, new)
        return Folded(new, changed=True, published=bool(outputs), outputs=outputs, applied=applied,
                      duplicates=skipped + len(fresh) - applied)


class KpiWindowProjection:
    """Stage 2 over ``kuailv.kpi-contributions.v1``: key window; emits the window's ``KpiFigures``."""

    name = "kpis"

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, rec: SourceRecord) -> Keyed[dict[str, Any]] | DeadLetter:
        decoded = decode_checked(self.codec, rec, "KpiContribution", "window_key")
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(decoded.value["window_key"], decoded.value)

    def fold(self, key: str, state: State | None, items: Sequence[tuple[SourceRecord, Any]]) -> Folded[State]:
        positions, fresh, skipped = skip_applied(state["pos"] if state else {}, items)
        if not fresh:
            return Folded(state, duplicates=skipped)
        orders = dict(state["orders"]) if state else {}
        applied = 0
        for _, c in fresh:
            cur = orders.get(c["order_id"])
            if cur is None or revision(c) > revision(cur):
                orders[c["order_id"]] = {k: v for k, v in c.items() if k not in _WINDOW_FIELDS}
                applied += 1
        new = {"orders": orders, "pos": positions}
        outputs: list[Output] = [("kpi", figures(key, orders))] if applied else []
        return Folded(new, changed=True, published=bool(outputs), outputs=outputs, applied=applied,
                      duplicates=skipped + len(fresh) - applied)


_WINDOW_FIELDS = frozenset({"window_key", "dimension", "dimension_id", "day"})

# stage (the worker's agent and the Flink job's --projection) -> (projection class, input topics in merge-tie order)
STAGES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "kpi-exposures": (KpiExposureProjection, (ALERTS.name,)),
    "kpi-orders": (KpiOrderProjection, (ORDER_STATE.name, KPI_EXPOSURES.name)),
    "kpis": (KpiWindowProjection, (KPI_CONTRIBUTIONS.name,)),
}
