"""Alert acknowledgements in Redis (``POST /alerts/{alert_id}/ack``): who handles an open alert.

    {p}:alert-ack:{alert_id}   hash  by (the caller's subject), role, at (epoch ms, the server's clock), note

An acknowledgement changes nothing in the alert itself (the alert agent owns ``{p}:alert:{id}``; it stays
open until its rule resolves it); a second acknowledgement replaces the first. The reads merge it into
every alert they return as ``acknowledged`` (``{"by", "at"}`` or null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.timefmt import iso


def ack_key(prefix: str, alert_id: str) -> str:
    return f"{prefix}:alert-ack:{alert_id}"


def alert_exists(client: Any, prefix: str, alert_id: str) -> bool:
    return bool(client.exists(f"{prefix}:alert:{alert_id}"))


def acknowledge(client: Any, prefix: str, alert_id: str, *, by: str, role: str, at_ms: int, note: str | None) -> None:
    client.hset(ack_key(prefix, alert_id), mapping={"by": by, "role": role, "at": at_ms, "note": note or ""})


def acknowledgements(client: Any, prefix: str, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """alert id -> ``{"by", "at"}`` (ISO-8601 UTC) for the acknowledged ones among ``alert_ids``, in one round trip."""
    if not alert_ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for aid in alert_ids:
        pipe.hmget(ack_key(prefix, aid), "by", "at")
    out = {}
    for aid, (by, at) in zip(alert_ids, pipe.execute(), strict=True):
        if by is not None and at is not None:
            out[aid] = {"by": by.decode() if isinstance(by, bytes) else by, "at": iso(int(at))}
    return out


def with_acknowledgements(alerts: Sequence[Mapping[str, Any]], acks: Mapping[str, dict[str, Any]]
                          ) -> list[dict[str, Any]]:
    return [{**a, "acknowledged": acks.get(a["alert_id"])} for a in alerts]
