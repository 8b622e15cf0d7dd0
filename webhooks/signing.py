"""Standard Webhooks signing (https://www.standardwebhooks.com), written here; pure but for ``new_secret``.

Every attempt carries three headers::

    webhook-id:        msg_...           the same on every attempt of a delivery (the idempotency key)
    webhook-timestamp: 1780293600        seconds since the epoch, of this attempt
    webhook-signature: v1,<base64>       HMAC-SHA256 with the secret over "{id}.{timestamp}.{body}"

The secret is ``whsec_`` + base64 of random bytes; the HMAC key is the decoded bytes. During a secret
rotation's grace period the header carries one signature per valid secret, space separated
(``v1,<new> v1,<old>``); a receiver accepts the request when any of them matches its secret.

The id is derived, never random: ``delivery_id(subscription, topic, partition, offset)``, so the worker
makes the same id again for the same record after a restart and a receiver can deduplicate on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DEFAULT_TOLERANCE_S = 300  # receivers reject timestamps further than 5 minutes from their clock


class SignatureError(ValueError):
    """A request's webhook headers do not verify (the message says which check failed)."""


def new_secret() -> str:
    """A fresh ``whsec_...`` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"webhook secret {secret[:10]}...: not {SECRET_PREFIX} + base64 ({exc})") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp_s}.{body}">``."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One signature per secret (the newest first), space separated."""
    if not secrets_:
        raise ValueError(f"delivery {msg_id}: no secret to sign with")
    return " ".join(sign(s, msg_id, timestamp_s, body) for s in secrets_)


def webhook_headers(secrets_: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": signature_header(secrets_, msg_id, timestamp_s, body),
            "content-type": "application/json"}


def delivery_id(subscription_id: str, topic: str, partition: int, offset: int) -> str:
    """The stable id of the delivery of one source record to one subscription: ``msg_`` + 26 base32 characters
    of SHA-256 over the four parts (topic is the contract name, not a renamed copy)."""
    digest = hashlib.sha256(f"{subscription_id}\x1f{topic}\x1f{partition}\x1f{offset}".encode()).digest()
    return "msg_" + base64.b32encode(digest).decode().lower()[:26]


def verify(secret: str, headers: Mapping[str, str], body: bytes, now_s: int,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
    """A receiver's check, for Python receivers and our tests' hand check: raises ``SignatureError``."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts, header = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(ts)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {ts!r} is not an integer") from None
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp {timestamp} is more than {tolerance_s}s from now ({now_s})")
    expected = sign(secret, msg_id, timestamp, body).partition(",")[2]
    for candidate in header.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise SignatureError(f"no v1 signature of {msg_id} matches the secret")
