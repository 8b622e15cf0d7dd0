"""The store contract on the in-memory fakes (the integration twin runs it on Redis)."""

from __future__ import annotations

import pytest

from tests.contract.order_store_contract import CONTRACTS, Contract, StoreHarness
from tests.unit.streams.fakes import FakeDriverPositions, FakeOrderStore


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_fakes_keep_the_store_contract(contract: Contract) -> None:
    contract(StoreHarness(FakeOrderStore(), FakeDriverPositions()))
