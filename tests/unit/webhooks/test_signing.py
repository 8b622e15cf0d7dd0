"""Our Standard Webhooks signatures, checked independently: by the reference library (``standardwebhooks``)
and by a hand computation of the HMAC; and the delivery ids that make retries idempotent."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.signing import (
    SECRET_PREFIX,
    SignatureError,
    delivery_id,
    new_secret,
    secret_key,
    sign,
    verify,
    webhook_headers,
)

# The example of the Standard Webhooks specification (and of the reference library's tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def now_s() -> int:
    return int(datetime.now(UTC).timestamp())


def test_the_specification_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_a_hand_computed_hmac_matches() -> None:
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = '{"type":"order.changed","data":{"orderId":"KL1","备注":"冷链"}}'.encode()
    expected = base64.b64encode(hmac.new(key, b"msg_x.1780293600." + body, hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_x", 1780293600, body) == f"v1,{expected}"


def test_the_reference_library_verifies_our_headers() -> None:
    secret = new_secret()
    body = b'{"type":"alert.opened","timestamp":"2026-06-01T06:00:00Z","data":{"alert_id":"late/order/KL1"}}'
    headers = webhook_headers([secret], delivery_id("sub_1", "kuailv.alerts.v1", 2, 41), now_s(), body)
    assert Webhook(secret).verify(body, headers) == {"type": "alert.opened", "timestamp": "2026-06-01T06:00:00Z",
                                                      "data": {"alert_id": "late/order/KL1"}}
    assert headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"KL1", b"KL2"), headers)  # tampered body
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)  # another secret


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"order.changed"}'
    headers = webhook_headers([new, old], "msg_rot", now_s(), body)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        verify(secret, headers, body, now_s())
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_the_reference_library_rejects_an_old_timestamp_and_so_do_we() -> None:
    secret = new_secret()
    old = now_s() - 600
    headers = webhook_headers([secret], "msg_old", old, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", headers)
    with pytest.raises(SignatureError, match="more than 300s"):
        verify(secret, headers, b"{}", now_s())
    verify(secret, headers, b"{}", old + 1)  # within tolerance of its own time


def test_our_verifier_names_what_failed() -> None:
    secret = new_secret()
    headers = webhook_headers([secret], "msg_1", 100, b"{}")
    with pytest.raises(SignatureError, match="missing header webhook-id"):
        verify(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, b"{}", 100)
    with pytest.raises(SignatureError, match="no v1 signature of msg_1"):
        verify(secret, headers, b"{ }", 100)
    with pytest.raises(SignatureError, match="not an integer"):
        verify(secret, {**headers, "webhook-timestamp": "soon"}, b"{}", 100)


def test_secrets_are_whsec_base64_of_24_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith(SECRET_PREFIX) and a != b
    assert len(secret_key(a)) == 24
    with pytest.raises(ValueError, match="not whsec_"):
        secret_key("whsec_%%%")
    with pytest.raises(ValueError, match="no secret"):
        webhook_headers([], "msg_1", 1, b"{}")


def test_delivery_ids_are_stable_and_distinct() -> None:
    first = delivery_id("sub_a", "kuailv.order-state.v1", 3, 1234)
    assert first == delivery_id("sub_a", "kuailv.order-state.v1", 3, 1234)  # after a restart: the same id
    digest = hashlib.sha256(b"sub_a\x1fkuailv.order-state.v1\x1f3\x1f1234").digest()
    assert first == "msg_" + base64.b32encode(digest).decode().lower()[:26]
    others = {delivery_id("sub_b", "kuailv.order-state.v1", 3, 1234),
              delivery_id("sub_a", "kuailv.alerts.v1", 3, 1234),
              delivery_id("sub_a", "kuailv.order-state.v1", 4, 1234),
              delivery_id("sub_a", "kuailv.order-state.v1", 3, 1235)}
    assert first not in others and len(others) == 4
    assert len(first) == 30 and first.startswith("msg_")
