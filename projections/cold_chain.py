"""Cold-chain rules for one (vehicle, compartment) sensor stream. Pure; the state is plain JSON.

``step(state, reading, rules, on_board)`` takes the readings of one stream in event-time order
(the caller sorts them by ``(event_time, event_id)``) with the ids of the orders on board at that
reading, and returns the new state and the alert changes. A reading whose event time is not
after the last one taken (a duplicate, or a second reading in the same millisecond, or one out
of order) changes nothing, so duplicated input gives the same alerts.

A reading is *out of range* when its temperature is outside the rule's range for the
compartment (``ranges_c``; a compartment without a range, e.g. AMBIENT, never is). Both rules
treat the time between two readings as out of range when the earlier reading was.

* cold-chain-breach: readings continuously out of range for ``min_duration_min`` open the alert
  at the first out-of-range reading's time; the first in-range reading resolves it. Two
  out-of-range readings more than ``max_gap_min`` apart do not make one continuous breach (the
  run restarts) unless the alert is already open. Subject ``vehicle`` (``warehouse`` for a room
  sensor), id ``<vehicle_id>/<compartment>``.
* cold-chain-exposure: a trip starts at the first reading with orders on board and ends at the
  first reading with none. Each interval of the trip after an out-of-range reading adds
  ``min(interval, max_gap_min)`` (a sensor gap is not exposure) to the trip's total; the alert
  opens once per trip at the instant the total reaches ``threshold_min`` and resolves when the
  trip ends. Subject id ``<vehicle_id>/<compartment>/trip-<trip start ms>``.

Evidence (strings): device_id, unit_id (vehicle or warehouse id), compartment, range,
first_breach_at, last_breach_at (epoch ms), max_c, min_c, orders ("KL1,KL2": on board now for
the breach, the whole trip's for exposure), order_count; breach adds minutes, readings and on
resolve recovered_at, recovered_c; exposure adds trip_start, exposure_min (accumulated when decided:
on the resolve, the trip's total) and on resolve trip_end.

State: ``{"unit_id", "kind", "compartment", "last_at", "last_c", "last_id", "run", "trip"}``;
``run`` is the current out-of-range run (or None), ``trip`` the current or last trip with its
accumulated ``exposure_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.alert_rules import ColdChainBreach, ColdChainExposure, Rule, RuleSet, minutes_ms
from projections.alerts import AlertChange
from projections.timefmt import ms

State = dict[str, Any]


def new_state(reading: Mapping[str, Any]) -> State:
    vehicle = reading.get("vehicle_id")
    return {"unit_id": vehicle or reading.get("warehouse_id"), "kind": "vehicle" if vehicle else "warehouse",
            "compartment": str(reading["compartment"]), "last_at": None, "last_c": None, "last_id": None,
            "run": None, "trip": None}


def _out(rule: Rule | None, compartment: str, celsius: float | None) -> bool:
    if rule is None or celsius is None:
        return False
    assert isinstance(rule.params, ColdChainBreach | ColdChainExposure)
    window = rule.params.ranges_c.get(compartment)
    return window is not None and not window.contains(celsius)


def _c(value: float | None) -> str:
    return "" if value is None else format(round(value, 2), "g")


def _minutes(duration_ms: int) -> str:
    return f"{duration_ms / 60_000:.1f}"


class _Stream:
    """One step's context: the reading, the rules and the collected changes."""

    def __init__(self, state: State, reading: Mapping[str, Any], rules: RuleSet, boarded: list[str]) -> None:
        self.state, self.rules, self.boarded = state, rules, boarded
        self.at = ms(reading["event_time"])
        self.celsius = float(reading["temperature_c"])
        self.compartment = state["compartment"]
        self.subject = {"vehicle_id": reading.get("vehicle_id"), "warehouse_id": reading.get("warehouse_id")}
        self.base = {"device_id": str(reading.get("device_id") or ""), "unit_id": str(state["unit_id"]),
                     "compartment": self.compartment}
        self.changes: list[AlertChange] = []

    def emit(self, rule: Rule, opening: bool, at: int, subject_id: str, evidence: dict[str, str]) -> None:
        params = rule.params
        assert isinstance(params, ColdChainBreach | ColdChainExposure)
        window = params.ranges_c.get(self.compartment)
        evidence = {**self.base, "range": window.label if window else "", **evidence}
        self.changes.append(self.rules.change(rule, opening=opening, at=at, subject_kind=self.state["kind"],
                                              subject_id=subject_id, subject=self.subject, evidence=evidence))

    def breach(self, rule: Rule | None) -> dict[str, Any] | None:
        run = self.state["run"]
        if rule is None:
            return None
        assert isinstance(rule.params, ColdChainBreach)
        subject_id = f"{self.state['unit_id']}/{self.compartment}"
        if not _out(rule, self.compartment, self.celsius):
            if run is not None and run["open"]:
                self.emit(rule, False, self.at, subject_id, {
                    "recovered_at": str(self.at), "recovered_c": _c(self.celsius),
                    "minutes": _minutes(self.at - run["since"]), "last_breach_at": str(run["last"])})
            return None
        if run is None or (not run["open"] and self.at - run["last"] > minutes_ms(rule.params.max_gap_min)):
            run = {"since": self.at, "last": self.at, "max_c": self.celsius, "min_c": self.celsius, "count": 1,
                   "open": False}
        else:
            run = {**run, "last": self.at, "max_c": max(run["max_c"], self.celsius),
                   "min_c": min(run["min_c"], self.celsius), "count": run["count"] + 1}
        if not run["open"] and self.at - run["since"] >= minutes_ms(rule.params.min_duration_min):
            run["open"] = True
            self.emit(rule, True, run["since"], subject_id, {
                "first_breach_at": str(run["since"]), "last_breach_at": str(self.at),
                "minutes": _minutes(self.at - run["since"]), "max_c": _c(run["max_c"]), "min_c": _c(run["min_c"]),
                "readings": str(run["count"]), "orders": ",".join(self.boarded),
                "order_count": str(len(self.boarded))})
        return run

    def trip(self, rule: Rule | None) -> dict[str, Any] | None:
        trip = self.state["trip"]
        if trip is not None and trip["end"] is None:
            trip = {**trip, "orders": sorted(set(trip["orders"]) | set(self.boarded))}
            self._accumulate(trip, rule)
            if not self.boarded:
                trip["end"] = self.at
                if trip["open"] and rule is not None:
                    self.emit(rule, False, self.at, self._trip_id(trip), {
                        "trip_end": str(self.at), "exposure_min": _minutes(trip["exposure_ms"]),
                        "orders": ",".join(trip["orders"]), "order_count": str(len(trip["orders"]))})
                return trip
        elif self.boarded:
            trip = {"start": self.at, "end": None, "exposure_ms": 0, "open": False, "orders": list(self.boarded),
                    "first_out": None, "last_out": None, "max_c": None, "min_c": None}
        else:
            return trip
        if _out(rule, self.compartment, self.celsius):
            first = self.at if trip["first_out"] is None else trip["first_out"]
            trip.update(first_out=first, last_out=self.at,
                        max_c=max(trip["max_c"] if trip["max_c"] is not None else self.celsius, self.celsius),
                        min_c=min(trip["min_c"] if trip["min_c"] is not None else self.celsius, self.celsius))
        return trip

    def _trip_id(self, trip: Mapping[str, Any]) -> str:
        return f"{self.state['unit_id']}/{self.compartment}/trip-{trip['start']}"

    def _accumulate(self, trip: dict[str, Any], rule: Rule | None) -> None:
        prev_at = self.state["last_at"]
        if rule is None or prev_at is None or not _out(rule, self.compartment, self.state["last_c"]):
            return
        assert isinstance(rule.params, ColdChainExposure)
        before = trip["exposure_ms"]
        trip["exposure_ms"] = before + min(self.at - prev_at, minutes_ms(rule.params.max_gap_min))
        threshold = minutes_ms(rule.params.threshold_min)
        if trip["open"] or trip["exposure_ms"] < threshold:
            return
        trip["open"] = True
        self.emit(rule, True, prev_at + threshold - before, self._trip_id(trip), {
            "trip_start": str(trip["start"]), "exposure_min": _minutes(trip["exposure_ms"]),
            "first_breach_at": str(trip["first_out"] or ""), "last_breach_at": str(trip["last_out"] or ""),
            "max_c": _c(trip["max_c"]), "min_c": _c(trip["min_c"]),
            "orders": ",".join(trip["orders"]), "order_count": str(len(trip["orders"]))})


BOTH = ("cold-chain-breach", "cold-chain-exposure")


def step(state: State | None, reading: Mapping[str, Any], rules: RuleSet,
         on_board: Sequence[str], kinds: Sequence[str] = BOTH) -> tuple[State, list[AlertChange]]:
    """Take one reading (see the module docstring); ``state`` is not modified. ``kinds``: the rules to
    decide here (the alert projection decides breaches per device; the fleet projection, which knows
    the orders on each van, decides exposure per trip)."""
    at = ms(reading["event_time"])
    if state is not None and state["last_at"] is not None and at <= state["last_at"]:
        return state, []
    stream = _Stream(dict(state) if state is not None else new_state(reading), reading, rules, sorted(set(on_board)))
    new = stream.state
    new["trip"] = stream.trip(rules.by_kind("cold-chain-exposure") if "cold-chain-exposure" in kinds else None)
    new["run"] = stream.breach(rules.by_kind("cold-chain-breach") if "cold-chain-breach" in kinds else None)
    new.update(last_at=at, last_c=stream.celsius, last_id=reading.get("event_id"))
    return new, stream.changes
