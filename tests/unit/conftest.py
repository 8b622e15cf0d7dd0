"""Unit tests never touch the dev stack's files: personal-data keys live in memory unless a test
gives a key store of its own (``OrderService(..., keys=...)``, ``KUAILV_KEYSTORE`` set by the test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _keys_in_memory() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUAILV_KEYSTORE", "memory://")
        yield
