"""Shared fixtures. Integration tests get the real test stack (Kafka, Redis,
InfluxDB on loopback test ports), started by the project's own ``infra.stack``
and stopped at the end of the session if this session started it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config import settings as settings_mod
from config.settings import Settings


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    from infra import stack as infra_stack

    was_running = infra_stack.is_healthy("test")
    infra_stack.ensure_started("test")
    try:
        yield settings_mod.load("test")
    finally:
        if not was_running and not os.environ.get("KUAILV_KEEP_TEST_STACK"):
            infra_stack.stop("test")
