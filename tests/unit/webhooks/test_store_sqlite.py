"""The webhook store contract (``tests/contract/webhook_store_contract.py``) on SQLite: a WAL file, and
``memory://``. The same functions run on PostgreSQL in ``tests/integration/test_webhooks.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.webhook_store_contract import CONTRACTS, Contract, sub
from webhooks.store import WebhookStore


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_sqlite_file_keeps_the_store_contract(tmp_path: Path, contract: Contract) -> None:
    store = WebhookStore.from_url(f"sqlite:///{tmp_path / 'webhooks.sqlite'}")
    try:
        contract(store)
    finally:
        store.close()


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_memory_keeps_the_store_contract(contract: Contract) -> None:
    store = WebhookStore.from_url("memory://")
    try:
        contract(store)
    finally:
        store.close()


def test_a_second_process_sees_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    api, worker = WebhookStore.from_url(url), WebhookStore.from_url(url)  # the API and the delivery worker
    try:
        api.create(sub("sub_a"))
        assert [s.id for s in worker.subscriptions(states=("active",))] == ["sub_a"]
    finally:
        api.close()
        worker.close()
