"""One batch through a keyed projection *and* the event-time timers it makes due. Pure.

The geofence and alert projections (``projections.geofence_step``, ``projections.alert_step``)
have timers: gps-silent per driver, late delivery and "stuck" per order. The decisions are
theirs (``fire_silences``, ``fire_due``); what every engine must also do the same way is the
bookkeeping around them:

1. fold the batch (``keyed_batch.fold_batch``);
2. record each changed key's next due time under its timer partition (``"topic:partition"``);
3. move the partitions' watermarks from the data the batch folded (never a wall clock);
4. for every moved partition, in sorted order, fire the keys due at or below its watermark.

``TimedBatches.step`` is that sequence, over states and timer indexes the engine owns: ``kuailv
replay`` keeps them in dicts, the Flink job in keyed ``MapState``. (The worker's agents do the
same four steps around Redis and a sink thread: ``streams/geofence_agent.py``,
``streams/alert_agent.py``; the parity tests hold the three together.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.keyed_batch import BatchResult, Counts, fold_batch
from schemas.dead_letters import DeadLetter, SourceRecord

State = dict[str, Any]
Output = tuple[str, dict[str, Any]]  # ("transition" | "eta" | "alert", record)
Fire = Callable[[Mapping[str, State], int], tuple[list[dict[str, Any]], dict[str, State]]]


@dataclass(frozen=True)
class Timing:
    """How a projection's event-time timers work (``geofence_timing``, ``alert_timing``)."""

    moved: Callable[[BatchResult[State], Mapping[str, int]], dict[str, int]]  # partitions whose watermark moves
    fire: Fire  # (states due, watermark) -> (alert records, new states)
    due: Callable[[State], int | None]  # a state's next due time
    where: Callable[[str, str, int], str]  # (key, topic, partition) -> the timer partition of the key


@dataclass
class Stepped:
    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[str, State] = field(default_factory=dict)  # every key whose state changed (folded or fired)
    dues: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # key -> (timer partition, next due)
    moved: dict[str, int] = field(default_factory=dict)  # timer partition -> new watermark
    counts: Counts = field(default_factory=Counts)


def geofence_timing(projection: Any) -> Timing | None:
    """gps-silent timers of ``GeofenceProjection`` (None without rules): the GPS partition's watermark is
    its newest ping minus the allowed lateness; a driver is in the same partition of both inputs."""
    from projections.geofence_step import fire_silences, gps_watermarks
    from schemas.topics import GPS

    rules = projection.rules
    if rules is None:
        return None
    lateness = projection.ctx.allowed_lateness_ms
    return Timing(moved=lambda result, marks: gps_watermarks(result, marks, lateness, GPS.name),
                  fire=lambda states, mark: fire_silences(states, mark, rules),
                  due=lambda state: state.get("silence_due"),
                  where=lambda key, topic, partition: f"{GPS.name}:{partition}")


def alert_timing(projection: Any, lateness_ms: int) -> Timing:
    """Order timers of ``AlertProjection``: the order-event partition's watermark is its newest folded
    ``updated_at`` minus ``lateness_ms``. Device states have no timers."""
    from projections.alert_step import fire_due, moved_watermarks, next_due

    rules = projection.rules
    return Timing(moved=lambda result, marks: moved_watermarks(result, marks, lateness_ms),
                  fire=lambda states, mark: fire_due(states, mark, rules),
                  due=next_due,
                  where=lambda key, topic, partition: f"{topic}:{partition}")


class TimedBatches:
    def __init__(self, projection: Any, timing: Timing | None) -> None:
        self.projection = projection
        self.timing = timing

    def step(self, records: Sequence[SourceRecord], load: Callable[[Sequence[str]], Mapping[str, State]],
             timers: Callable[[str], MutableMapping[str, int]], watermarks: MutableMapping[str, int]) -> Stepped:
        """Fold ``records`` and fire what they make due. ``load(keys)`` returns the known states of
        ``keys``; ``timers(partition)`` the engine's mutable index {key: next due} of a timer partition;
        ``watermarks`` is updated in place. Returns the outputs in publishing order."""
        result = fold_batch(self.projection, records, load)
        out = Stepped(dead_letters=result.dead_letters, counts=result.counts)
        timing = self.timing
        for key, f in result.folded.items():
            if not f.changed or f.state is None:
                continue
            out.states[key] = f.state
            out.outputs += [o if type(o) is tuple else ("alert", o) for o in f.outputs]
            if timing is not None:
                topic, partition = result.partitions[key]
                self._set(out, timers, key, timing.where(key, topic, partition), f.state)
        if timing is None:
            return out
        moved = timing.moved(result, watermarks)
        for where in sorted(moved):
            mark = moved[where]
            index = timers(where)
            due = sorted(k for k, at in index.items() if at <= mark)
            if not due:
                continue
            known = {k: out.states[k] for k in due if k in out.states}
            known.update(load([k for k in due if k not in known]))
            fired, new = timing.fire(known, mark)
            out.outputs += [("alert", a) for a in fired]
            for key, state in new.items():
                out.states[key] = state
                self._set(out, timers, key, where, state)
        watermarks.update(moved)
        out.moved = moved
        return out

    def _set(self, out: Stepped, timers: Callable[[str], MutableMapping[str, int]], key: str, where: str,
             state: State) -> None:
        assert self.timing is not None
        due = self.timing.due(state)
        index = timers(where)
        if due is None:
            index.pop(key, None)
        else:
            index[key] = due
        out.dues[key] = (where, due)
