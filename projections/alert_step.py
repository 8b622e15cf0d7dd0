"""SLA and cold-chain alerts as a ``projections.keyed_batch`` projection. Pure.

Inputs: ``kuailv.order-events.v1`` (keyed by order id; the log of truth) and
``kuailv.sensors.v1`` (readings keyed by device id). Keys are namespaced (``order:<id>``,
``device:<id>``) so the two cannot collide in one state store.

* **Orders.** The order events are folded again here with ``projections.order_state.fold``
  (``trace=True``), and the rules see the view after *every* applied version, in version order
  (``projections.order_rules``): instant rules open and resolve, timer rules (late delivery,
  stuck) get their due times. Not the coalesced ``kuailv.order-state.v1`` records: a shortage
  that opened and cleared between two published views would be missed during a catch-up and
  seen live, so the alerts would depend on batching. Duplicates, out-of-order events and
  refusals are the fold's business (its dead letters are the order agent's, not repeated here).
  Timers fire in ``fire_timers(state, watermark)``, which the engine calls when the event-time
  watermark of the order-event partition passes a due time; the alert is dated at the due time,
  so when it is noticed does not change what is published. Final states have no timers:
  late records after one cannot re-open an order timer.
* **Sensors.** A device's readings are taken in arrival order (a device sends in order) through
  ``projections.cold_chain``; a reading older than the last one taken is a ``LATE_EVENT`` dead
  letter (the cold-chain state has moved past it), unless its event id is among the device's last
  64 readings (then it is a duplicate). Arrival order, not a sort per batch, so the result does
  not depend on how an engine batches the stream.

Per key the state holds the alerts raised on it (``AlertBook`` semantics of
``projections.alerts``) and the last source offset applied per partition, so a re-delivered
batch is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections import cold_chain, order_rules
from projections.alert_rules import RuleSet
from projections.alerts import apply_changes
from projections.keyed_batch import BatchResult, Folded, Keyed, decode_checked, skip_applied
from projections.order_state import fold
from projections.order_step import decode_order_record
from projections.telemetry import validate_sensor
from schemas.dead_letters import DeadLetter, SourceRecord

Input = tuple[str, dict[str, Any]]  # (record type, value)
RECENT_IDS = 64  # a device's last reading ids: a re-published duplicate is a duplicate, not a late reading


def fire_timers(state: dict[str, Any], watermark: int, rules: RuleSet) -> list[dict[str, Any]]:
    """Fire the order timers due at or before ``watermark`` (mutates ``state``, a private copy);
    returns the alert records to publish."""
    timers: dict[str, int] = state.get("timers") or {}
    due = sorted((at, rule_id) for rule_id, at in timers.items() if at <= watermark)
    if not due:
        return []
    changes = []
    for at, rule_id in due:
        change = order_rules.fire(state["fold"]["view"], rule_id, at, rules)
        if change is not None:
            changes.append(change)
        del timers[rule_id]
        state["fired"][rule_id] = at
    return apply_changes(state["alerts"], changes)


def next_due(state: Mapping[str, Any] | None) -> int | None:
    timers = (state or {}).get("timers") or {}
    return min(timers.values()) if timers else None


def moved_watermarks(result: BatchResult[dict[str, Any]], watermarks: Mapping[str, int],
                     lateness_ms: int) -> dict[str, int]:
    """The order-event partitions (``"topic:partition"``) whose event-time watermark this batch moves:
    the newest order ``updated_at`` folded in it minus ``lateness_ms``, where that beats ``watermarks``."""
    moved: dict[str, int] = {}
    low = -(2**62)
    for key, f in result.folded.items():
        if not f.changed or f.state is None or not key.startswith("order:"):
            continue
        view = (f.state.get("fold") or {}).get("view")
        if view is None:
            continue
        topic, partition = result.partitions[key]
        where = f"{topic}:{partition}"
        mark = view["updated_at"] - lateness_ms
        if mark > max(watermarks.get(where, low), moved.get(where, low)):
            moved[where] = mark
    return moved


def fire_due(states: Mapping[str, dict[str, Any]], watermark: int, rules: RuleSet
             ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Fire the timers due at or before ``watermark`` of ``states`` (keys in sorted order, so the
    records come out the same in every engine); the inputs are not modified. Returns the alert
    records and the new states of the keys that had a due timer."""
    records: list[dict[str, Any]] = []
    new: dict[str, dict[str, Any]] = {}
    for key in sorted(states):
        state = states[key]
        due = next_due(state)
        if due is None or due > watermark:
            continue
        state = {**state, "timers": dict(state["timers"]), "fired": dict(state.get("fired") or {}),
                 "alerts": dict(state["alerts"])}
        records += fire_timers(state, watermark, rules)
        new[key] = state
    return records, new


class AlertProjection:
    name = "alerts"

    def __init__(self, codec: Any, rules: RuleSet, kinds: Mapping[str, str]) -> None:
        self.codec = codec  # schemas.codec.AvroCodec (epoch_ms=True)
        self.rules = rules
        self.kinds = kinds  # topic -> record type: {"kuailv.order-events.v1": "OrderEvent", ...}

    def decode(self, rec: SourceRecord) -> Keyed[Input] | DeadLetter:
        expected = self.kinds[rec.topic]
        if expected == "OrderEvent":
            out = decode_order_record(self.codec, rec)
            if type(out) is DeadLetter:
                return out
            return Keyed(f"order:{out.value['order_id']}", (out.record_type, out.value))  # type: ignore[union-attr]
        decoded = decode_checked(self.codec, rec, expected, "device_id", validate_sensor)
        if type(decoded) is DeadLetter:
            return decoded
        return Keyed(f"device:{decoded.value['device_id']}", (decoded.record_type, decoded.value))

    def fold(self, key: str, state: dict[str, Any] | None, items: Sequence[tuple[SourceRecord, Input]]) -> Folded:
        st = _copy(state)
        st["pos"], fresh, duplicates = skip_applied(st["pos"], items)
        if not fresh:
            return Folded(state, duplicates=duplicates)
        if key.startswith("order:"):
            records, dup = self._orders(st, [ev for _, ev in fresh])
            return Folded(st, changed=True, published=bool(records), outputs=records, applied=len(fresh) - dup,
                          duplicates=duplicates + dup)
        records, dead, dup = self._readings(st, fresh)
        return Folded(st, changed=True, published=bool(records), outputs=records, dead_letters=dead,
                      applied=len(fresh) - dup - len(dead), duplicates=duplicates + dup)

    def _orders(self, st: dict[str, Any], events: list[Input]) -> tuple[list[dict[str, Any]], int]:
        records: list[dict[str, Any]] = []
        dup = 0
        fold_state = st.get("fold")
        for event_type, event in events:
            if st["timers"] and fold_state is not None:
                # The order's own event proves its time passed these timers: fire them on the view as it
                # was at the due time, before applying the event, as the partition's watermark would have
                # done had it passed them first. So the alert does not depend on where the engine cut
                # its batches (the watermark moves per batch).
                st["fold"] = fold_state
                records += fire_timers(st, event["event_time"], self.rules)
            before = fold_state["view"] if fold_state else None
            result = fold(fold_state, event_type, event, trace=True)
            fold_state = result.state
            dup += result.duplicate
            for view in result.views:
                records += apply_changes(st["alerts"], order_rules.changes(before, view, self.rules,
                                                                            view["updated_at"]))
                before = view
            if result.views:
                fired = st["fired"]
                st["timers"] = {r: at for r, at in order_rules.due_timers(before, self.rules).items()
                                if fired.get(r) != at}
        st["fold"] = fold_state
        return records, dup

    def _readings(self, st: dict[str, Any], items: list[tuple[SourceRecord, Input]]
                  ) -> tuple[list[Any], list[DeadLetter], int]:
        """Alert records (breaches of warehouse rooms), then ``("reading", reading)`` for every vehicle reading
        taken: the fleet view (``projections.fleet``) decides a van's breaches and exposure per trip from them,
        knowing the orders on the van."""
        records: list[dict[str, Any]] = []
        forwards: list[dict[str, Any]] = []
        dead: list[DeadLetter] = []
        dup = 0
        cc = st.get("cold_chain")
        recent = list(st.get("recent") or [])
        for rec, (record_type, reading) in items:  # arrival order: the same in every engine, whatever the batching
            last = cc["last_at"] if cc else None
            if reading["event_id"] in recent:
                dup += 1
                continue
            if last is not None and reading["event_time"] <= last:
                if reading["event_time"] == last and reading["event_id"] == cc["last_id"]:
                    dup += 1
                else:
                    dead.append(DeadLetter(rec, "LATE_EVENT", f"reading at {reading['event_time']} is not after "
                                           f"device {reading['device_id']}'s last reading at {last}",
                                           reading["event_id"], record_type))
                continue
            # a van's compartment is decided by the fleet view, which knows the orders on board; a room here
            kinds = () if reading.get("vehicle_id") else ("cold-chain-breach",)
            cc, changes = cold_chain.step(cc, reading, self.rules, (), kinds=kinds)
            records += apply_changes(st["alerts"], changes)
            recent.append(reading["event_id"])
            if reading.get("vehicle_id"):  # to the fleet view, which knows the orders on the van (exposure)
                forwards.append(reading)
        st["cold_chain"] = cc
        st["recent"] = recent[-RECENT_IDS:]
        return records + [("reading", r) for r in forwards], dead, dup


def _copy(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return {"pos": {}, "alerts": {}, "timers": {}, "fired": {}}
    st = dict(state)
    st["pos"] = dict(state["pos"])
    st["alerts"] = dict(state["alerts"])
    st["timers"] = dict(state.get("timers") or {})
    st["fired"] = dict(state.get("fired") or {})
    return st
