"""Who is calling: signed bearer tokens (JWT, HS256, PyJWT) carrying a role and its tenant.

A token's claims: ``sub`` (the user or system), ``role`` (``service.policy.ROLES``), and the tenant
the role is scoped to: ``customer_id`` (merchant, customer), ``driver_id`` (driver),
``warehouse_id`` (warehouse staff); ``iat``/``exp``. The key is ``KUAILV_API_SECRET``; without it
the service uses a fixed local development key and says so at start-up (never in production: the
Kubernetes manifests set the secret). ``kuailv token`` issues one for local use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from service.policy import ROLES, TENANT_CLAIM

DEV_SECRET = "kuailv-local-development-key-not-for-production"
ALGORITHM = "HS256"
ISSUER = "kuailv"


class AuthError(Exception):
    """The request has no valid token (HTTP 401); the message says why."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: str
    tenant: str | None  # the customer, driver or warehouse the role is scoped to (None: all)


def secret_of(configured: str) -> str:
    return configured or DEV_SECRET


def issue(secret: str, subject: str, role: str, tenant: str | None = None, *, ttl_s: int = 12 * 3600,
          now: float | None = None) -> str:
    """A signed token for ``role``; a scoped role needs its ``tenant``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    claim = TENANT_CLAIM.get(role)
    if claim is not None and not tenant:
        raise ValueError(f"role {role} is scoped: give its {claim}")
    iat = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": subject, "role": role, "iss": ISSUER, "iat": iat, "exp": iat + ttl_s}
    if claim is not None:
        claims[claim] = tenant
    return jwt.encode(claims, secret_of(secret), algorithm=ALGORITHM)


def verify(secret: str, authorization: str | None) -> Principal:
    """The caller of an ``Authorization: Bearer <token>`` header, or ``AuthError``."""
    if not authorization:
        raise AuthError("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization must be 'Bearer <token>'")
    try:
        claims = jwt.decode(token.strip(), secret_of(secret), algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["sub", "role", "exp", "iat"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    return principal_of(claims)


def principal_of(claims: Mapping[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}")
    claim = TENANT_CLAIM.get(role)
    tenant = claims.get(claim) if claim else None
    if claim is not None and not tenant:
        raise AuthError(f"a {role} token needs {claim}")
    return Principal(str(claims["sub"]), role, tenant)
