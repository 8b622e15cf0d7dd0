"""Counters a projector reports per batch and in total."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class BatchStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    buffered: int = 0
    dead_letters: int = 0
    orders_written: int = 0
    points_written: int = 0
    positions_written: int = 0

    def add(self, other: BatchStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
