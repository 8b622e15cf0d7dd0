"""The store contract on the REAL Redis adapters (RedisOrderStore with its Lua
compare-and-set, RedisDriverPositions), against the test stack's Redis. The
unit twin runs the same functions on the fakes: this is what makes the fakes
trustworthy. Each test uses its own key prefix and deletes its keys afterwards."""

from __future__ import annotations

import uuid

import pytest
import redis

from config.settings import Settings
from streams.sinks.redis_orders import RedisOrderStore
from streams.sinks.redis_positions import RedisDriverPositions
from tests.contract.order_store_contract import CONTRACTS, Contract, StoreHarness

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__.removeprefix("contract_"))
def test_redis_keeps_the_store_contract(stack: Settings, contract: Contract) -> None:
    prefix = f"contract-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(stack.redis_url)
    try:
        contract(StoreHarness(RedisOrderStore(client, prefix), RedisDriverPositions(client, prefix)))
        if contract.__name__ == "contract_polar_latitude_is_stored":
            # Redis GEO refuses |lat| > 85.05: the polar fix lives only in the hash
            assert client.geopos(f"{prefix}:drivers:geo", "DRV-POLE") == [None]
            assert client.geopos(f"{prefix}:drivers:geo", "DRV-EQ") != [None]
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        assert list(client.scan_iter(match=f"{prefix}:*")) == []
        client.close()
