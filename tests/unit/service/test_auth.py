"""API tokens: issued and verified with PyJWT; every way a token can be wrong is a 401 reason."""

from __future__ import annotations

import jwt
import pytest

from service.auth import DEV_SECRET, AuthError, Principal, issue, verify

SECRET = "a-test-secret-of-at-least-32-bytes!!"


def test_round_trip_with_the_tenant_claim() -> None:
    token = issue(SECRET, "u1", "driver", "DRV-7")
    assert verify(SECRET, f"Bearer {token}") == Principal("u1", "driver", "DRV-7")
    assert jwt.decode(token, SECRET, algorithms=["HS256"], issuer="kuailv")["driver_id"] == "DRV-7"
    assert verify(SECRET, f"bearer {issue(SECRET, 'ops', 'operator')}").tenant is None


@pytest.mark.parametrize("header,why", [
    (None, "missing"), ("Basic abc", "Bearer"), ("Bearer not.a.jwt", "invalid token"),
])
def test_malformed_headers(header: str | None, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verify(SECRET, header)


def test_wrong_key_expired_and_unscoped_tokens_are_refused() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        verify("another-secret-of-at-least-32-bytes!!", f"Bearer {issue(SECRET, 'u', 'operator')}")
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, f"Bearer {issue(SECRET, 'u', 'operator', ttl_s=10, now=1_000)}")
    forged = jwt.encode({"sub": "u", "role": "merchant", "iss": "kuailv", "iat": 0, "exp": 2**40}, SECRET)
    with pytest.raises(AuthError, match="needs customer_id"):
        verify(SECRET, f"Bearer {forged}")
    unknown = jwt.encode({"sub": "u", "role": "root", "iss": "kuailv", "iat": 0, "exp": 2**40}, SECRET)
    with pytest.raises(AuthError, match="unknown role"):
        verify(SECRET, f"Bearer {unknown}")
    with pytest.raises(ValueError, match="scoped"):
        issue(SECRET, "u", "warehouse_staff")


def test_without_a_configured_secret_the_local_key_signs() -> None:
    token = issue("", "u", "operator")
    assert verify(DEV_SECRET, f"Bearer {token}").role == "operator"
