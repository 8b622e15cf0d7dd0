"""A tiny discrete-event engine: generator processes on a heap, steps out in event-time order.

A process is a generator. It yields either a ``Step`` (emitted at the current
time ``engine.now``) or an ``int``: the epoch ms at which it wants to resume
(>= now). The engine keeps only sleeping processes on its heap, so memory is
proportional to what is in flight, not to the length of the run. Ties are
broken by scheduling order, which makes the output deterministic.

Processes are either *work* (orders, vans, dispatch timers) or *background*
(sensors, an order's paperwork after delivery). ``done`` is true once no work
process is left; sensors check it and stop, other background processes simply
run to their end. The run ends when the heap is empty.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterator

from simulator.config import Command, Step, Telemetry

Process = Generator[Step | int, None, None]


class Engine:
    def __init__(self, start: int) -> None:
        self.now = start
        self._heap: list[tuple[int, int, Process, bool]] = []
        self._seq = 0
        self._work = 0  # work processes waiting on the heap

    def spawn(self, at: int, process: Process, *, work: bool = True) -> None:
        """Start ``process`` at ``at`` (epoch ms, >= now)."""
        if at < self.now:
            raise ValueError(f"cannot schedule at {at}, before now ({self.now})")
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, process, work))
        if work:
            self._work += 1

    @property
    def done(self) -> bool:
        """No work process is waiting (only callable from a running process)."""
        return self._work == 0

    @property
    def in_flight(self) -> int:
        return len(self._heap)

    def run(self) -> Iterator[Step]:
        heap = self._heap
        step_types = (Command, Telemetry)
        while heap:
            at, _, process, work = heapq.heappop(heap)
            if work:
                self._work -= 1
            self.now = at
            for item in process:
                if isinstance(item, step_types):
                    if item.at != at:
                        raise RuntimeError(f"process emitted a step at {item.at} while the clock is at {at}")
                    yield item
                else:
                    self.spawn(item, process, work=work)
                    break
