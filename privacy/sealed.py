"""One personal value sealed with AES-256-GCM: ``seal``, ``unseal``, ``is_sealed``.

A sealed value is a JSON-safe dict, the Avro record ``kuailv.privacy.Sealed``::

    {"key_id": "customer:CUST-A", "key_version": 1, "alg": "A256GCM",
     "nonce": "<12 bytes, base64>", "ciphertext": "<ciphertext + 16-byte tag, base64>"}

so it can sit wherever the plain string sat: the event store's JSON, Avro records, the fold
state in Redis, webhooks, audit entries, dead letters.

The authenticated data (AAD) binds the ciphertext to its key id, its key version and a
**label** naming the kind of data (``customer.name``, ``customer.phone``, ``customer.address``,
``driver.name``, ``driver.phone``, ``receiver.name``; ``privacy.fields``), not to a field path:
the projection copies ``OrderDispatched.driver_name`` into ``OrderState.driver.name`` and it
must still open there, while a ciphertext moved to another kind of data (a phone shown as a
name) or relabelled to another subject does not open (``SealError``).

Nonces are 96 random bits per value (``os.urandom``), the size GCM is built for; a key seals far
fewer than the 2^32 values after which random nonces start to risk a repeat. Tests may pass a
fixed ``nonce``; nothing else should.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALG = "A256GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
FIELDS = ("key_id", "key_version", "alg", "nonce", "ciphertext")  # the Avro record's field order
_AAD_DOMAIN = "kuailv.sealed/v1"

Sealed = dict[str, Any]


class SealError(ValueError):
    """A value could not be sealed or opened: wrong key, wrong label, tampering, or not a sealed value."""


def is_sealed(value: Any) -> bool:
    """Is ``value`` a sealed value (by shape: exactly the five fields, of the right types)?"""
    return (isinstance(value, Mapping) and len(value) == len(FIELDS) and all(k in value for k in FIELDS)
            and type(value["key_id"]) is str and type(value["key_version"]) is int
            and type(value["alg"]) is str and type(value["nonce"]) is str and type(value["ciphertext"]) is str)


@lru_cache(maxsize=1 << 14)  # (subject, version, label) repeat: a third of a seal's cost without it
def aad(key_id: str, key_version: int, label: str) -> bytes:
    """The authenticated data: unambiguous (JSON), so no two (key id, version, label) share one."""
    return json.dumps([_AAD_DOMAIN, key_id, key_version, label], ensure_ascii=False,
                      separators=(",", ":")).encode()


def seal(plaintext: str, *, key: bytes, key_id: str, key_version: int, label: str,
         nonce: bytes | None = None) -> Sealed:
    """``plaintext`` sealed under ``key`` (32 bytes), bound to ``key_id``, ``key_version`` and ``label``."""
    if type(plaintext) is not str:
        raise SealError(f"cannot seal {label} for {key_id} v{key_version}: expected a string, "
                        f"got {type(plaintext).__name__}")
    _check_key(key, key_id, key_version)
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise SealError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad(key_id, key_version, label))
    return {"key_id": key_id, "key_version": key_version, "alg": ALG, "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext)}


def unseal(value: Mapping[str, Any], *, key: bytes, label: str) -> str:
    """The plaintext of a sealed value; ``SealError`` naming key id, version and label when the key or
    label is wrong or the value was tampered with (GCM's tag does not tell which)."""
    if not is_sealed(value):
        raise SealError(f"not a sealed value (expected the fields {', '.join(FIELDS)}), opening it as {label}")
    key_id, version = value["key_id"], value["key_version"]
    where = f"sealed {label} of {key_id} v{version}"
    if value["alg"] != ALG:
        raise SealError(f"{where}: unsupported algorithm {value['alg']!r} (expected {ALG})")
    _check_key(key, key_id, version)
    nonce, ciphertext = _unb64(value["nonce"], where), _unb64(value["ciphertext"], where)
    if len(nonce) != NONCE_BYTES:
        raise SealError(f"{where}: nonce is {len(nonce)} bytes, expected {NONCE_BYTES}")
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, aad(key_id, version, label))
    except InvalidTag:
        raise SealError(f"{where} does not open: wrong key, not a {label} of this subject, "
                        "or the value was tampered with") from None
    return plain.decode("utf-8")


def _check_key(key: bytes, key_id: str, key_version: int) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise SealError(f"key of {key_id} v{key_version} must be {KEY_BYTES} bytes (AES-256), got {size}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealError(f"{where}: not base64: {exc}") from None
