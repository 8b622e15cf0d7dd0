"""One sealed value: round trips, and every way of opening it wrongly fails with ``SealError``."""

from __future__ import annotations

import base64
import json

import pytest

from privacy.sealed import ALG, FIELDS, SealError, is_sealed, seal, unseal

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NONCE = bytes(12)


def sealed(text: str = "王经理", **kw: object) -> dict:
    args = {"key": KEY, "key_id": "customer:CUST-A", "key_version": 1, "label": "customer.name", **kw}
    return seal(text, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["王经理", "13812345678", "北京市朝阳区建国路 88 号", "", "a" * 5000])
def test_round_trip(text: str) -> None:
    value = sealed(text)
    assert unseal(value, key=KEY, label="customer.name") == text


def test_the_sealed_form_is_json_safe_in_the_avro_field_order() -> None:
    value = sealed()
    assert list(value) == list(FIELDS)
    assert (value["key_id"], value["key_version"], value["alg"]) == ("customer:CUST-A", 1, ALG)
    assert len(base64.b64decode(value["nonce"])) == 12
    assert len(base64.b64decode(value["ciphertext"])) == len("王经理".encode()) + 16  # ciphertext + tag
    assert json.loads(json.dumps(value)) == value
    assert "王经理" not in json.dumps(value, ensure_ascii=False)
    assert is_sealed(value) and not is_sealed("王经理") and not is_sealed({**value, "extra": 1})
    assert not is_sealed({**value, "key_version": "1"}) and not is_sealed(None)


def test_a_fresh_nonce_per_value_and_a_fixed_one_only_when_given() -> None:
    assert sealed()["nonce"] != sealed()["nonce"]
    assert sealed(nonce=NONCE) == sealed(nonce=NONCE)
    with pytest.raises(SealError, match="nonce"):
        sealed(nonce=b"short")


def test_wrong_key_fails_naming_key_id_version_and_label() -> None:
    with pytest.raises(SealError, match=r"sealed customer\.name of customer:CUST-A v1 does not open"):
        unseal(sealed(), key=OTHER_KEY, label="customer.name")


def test_wrong_label_fails() -> None:
    """A name's ciphertext moved into a phone field (or a driver's name into a receiver's) does not open."""
    with pytest.raises(SealError, match=r"customer\.phone"):
        unseal(sealed(), key=KEY, label="customer.phone")
    with pytest.raises(SealError):
        unseal(sealed(label="driver.name"), key=KEY, label="receiver.name")


def test_relabelled_subject_or_version_fails_even_with_the_right_key() -> None:
    value = sealed()
    with pytest.raises(SealError, match="customer:CUST-B"):
        unseal({**value, "key_id": "customer:CUST-B"}, key=KEY, label="customer.name")
    with pytest.raises(SealError, match="v2"):
        unseal({**value, "key_version": 2}, key=KEY, label="customer.name")


@pytest.mark.parametrize("part", ["ciphertext", "nonce"])
def test_tampering_fails(part: str) -> None:
    value = sealed()
    raw = bytearray(base64.b64decode(value[part]))
    raw[0] ^= 1
    with pytest.raises(SealError, match="tampered"):
        unseal({**value, part: base64.b64encode(bytes(raw)).decode()}, key=KEY, label="customer.name")


def test_malformed_values_fail_with_context() -> None:
    value = sealed()
    with pytest.raises(SealError, match="not a sealed value"):
        unseal({"ciphertext": "x"}, key=KEY, label="customer.name")
    with pytest.raises(SealError, match="unsupported algorithm 'A128CBC'"):
        unseal({**value, "alg": "A128CBC"}, key=KEY, label="customer.name")
    with pytest.raises(SealError, match="not base64"):
        unseal({**value, "ciphertext": "***"}, key=KEY, label="customer.name")
    with pytest.raises(SealError, match="must be 32 bytes"):
        unseal(value, key=KEY[:16], label="customer.name")
    with pytest.raises(SealError, match="expected a string"):
        seal(12345, key=KEY, key_id="customer:CUST-A", key_version=1, label="customer.phone")  # type: ignore[arg-type]
