"""What an erasure rewrites in a current view: the customer's personal fields, sealed or plain, and nothing else;
and who may ask for it."""

from __future__ import annotations

import copy

import pytest

from privacy.erasure import ERASED, scrub_view
from service.auth import Principal
from service.policy import may_erase

SEALED = {"key_id": "customer:C1", "key_version": 1, "alg": "A256GCM", "nonce": "bm9uY2U=", "ciphertext": "Y3Q="}
DRIVER = {"key_id": "driver:D1", "key_version": 1, "alg": "A256GCM", "nonce": "bm9uY2U=", "ciphertext": "ZHI="}


def view(receiver: object) -> dict[str, object]:
    return {"order_id": "O1", "customer_id": "C1", "status": "SIGNED", "version": 9,
            "driver": {"driver_id": "D1", "name": DRIVER, "phone": "13800000000", "vehicle_id": "V1",
                       "vehicle_plate": "京A"},
            "signature": None if receiver is None else {"receiver_name": receiver, "signature_ref": "sig/1.png",
                                                        "photo_ref": None, "at": 1}}


@pytest.mark.parametrize("receiver", [SEALED, "王小明"])
def test_the_customers_fields_are_erased_sealed_or_plain(receiver: object) -> None:
    before = view(receiver)
    kept = copy.deepcopy(before)
    after = scrub_view(before)
    assert after["signature"]["receiver_name"] == ERASED  # type: ignore[index]
    assert after["driver"] == before["driver"]  # the driver's data is the driver's
    assert {k: v for k, v in after.items() if k != "signature"} == {k: v for k, v in before.items()
                                                                    if k != "signature"}
    assert before == kept  # the input is not changed


def test_a_view_without_the_customers_fields_is_left_as_it_is() -> None:
    unsigned = view(None)
    assert scrub_view(unsigned) == unsigned


@pytest.mark.parametrize(("role", "tenant", "allowed"), [
    ("operator", None, True), ("customer_service", None, True), ("customer", "C1", True), ("merchant", "C1", True),
    ("customer", "C2", False), ("merchant", "C2", False), ("driver", "D1", False), ("warehouse_staff", "W1", False),
])
def test_who_may_erase_a_customer(role: str, tenant: str | None, allowed: bool) -> None:
    access = may_erase(Principal("u", role, tenant), "C1")
    assert access.allowed is allowed and (allowed or "C1" in access.reason)
