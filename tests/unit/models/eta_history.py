"""A small simulated history for the delay-risk / ETA model tests, built once per test session (cached)."""

from __future__ import annotations

import functools

from models import history, training
from models.history import Dataset, Record
from simulator.config import SimulationConfig
from simulator.traffic import event_log
from trainer.pipeline import START

HOUR = 3_600_000
# Twelve busy hours from 06:00 Beijing: the morning rush, a shower (seed 9), late and on-time stops.
CONFIG = SimulationConfig(seed=9, orders=240, start=START + 6 * HOUR, orders_per_hour=20.0, gps_interval_s=10.0,
                          sensor_interval_s=3600.0)


@functools.cache
def small_log() -> tuple[Record, ...]:
    return tuple(event_log(CONFIG))


@functools.cache
def small_dataset() -> Dataset:
    return history.build_dataset(small_log())


@functools.cache
def split() -> tuple[Dataset, Dataset]:
    return history.split_at(small_dataset(), START + 14 * HOUR)


@functools.cache
def small_models() -> training.Models:
    return training.fit(split()[0], seed=3, max_iter=40)
