"""Shared fixtures. Integration tests get the real test stack (Kafka, Redis,
InfluxDB on loopback test ports), started by the project's own ``infra.stack``
and stopped at the end of the session if this session started it. The optional
PostgreSQL (``infra.postgres``, test port 25432) works the same way, through the
``postgres`` fixture only: the main stack never starts it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from config import settings as settings_mod
from config.settings import Settings

if TYPE_CHECKING:
    from infra.postgres import Cluster

# The tests pin the distance-speed ETA and nearest-neighbour stop order unless they choose otherwise: "auto"
# would pick up whatever model `make run` trained into .stack. The learnt model and the planner have tests of their
# own that set KUAILV_ETA_MODEL / KUAILV_ROUTE_PLANNER explicitly (tests/unit/models, test_model_parity.py, e2e).
os.environ.setdefault("KUAILV_ETA_MODEL", "baseline")
os.environ.setdefault("KUAILV_ROUTE_PLANNER", "nearest")


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    from infra import stack as infra_stack

    services = ["kafka", "redis", "influx"]
    started_here = [s for s in services if not infra_stack.is_healthy("test", services=[s])]
    try:
        infra_stack.ensure_started("test")
    except Exception:
        if started_here:  # leave nothing half-started behind
            infra_stack.stop("test", services=started_here)
        raise
    try:
        yield settings_mod.load("test")
    finally:
        # Stop only what this session started; KUAILV_KEEP_TEST_STACK=1 keeps it for the next run.
        if started_here and not os.environ.get("KUAILV_KEEP_TEST_STACK"):
            infra_stack.stop("test", services=started_here)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The test profile's PostgreSQL (``infra.postgres``): started if not running, stopped only if started here."""
    from infra import postgres as infra_postgres

    started_here = not infra_postgres.is_healthy("test")
    try:
        cluster = infra_postgres.ensure_started("test")
    except Exception:
        if started_here:  # leave nothing half-started behind
            infra_postgres.stop("test")
        raise
    try:
        yield cluster
    finally:
        if started_here and not os.environ.get("KUAILV_KEEP_TEST_STACK"):
            infra_postgres.stop("test")
