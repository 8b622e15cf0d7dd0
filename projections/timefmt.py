"""Event-time helpers. Times inside projections are epoch milliseconds (UTC).

Avro ``timestamp-millis`` decodes to aware datetimes; JSON replay files and
Redis state carry integers. Both are accepted; nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(value: Any) -> int:
    """Epoch milliseconds of an aware datetime or an int (already ms)."""
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: event times must be UTC-aware")
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise TypeError(f"not a timestamp: {value!r}")


def ms_or_none(value: Any) -> int | None:
    return None if value is None else ms(value)


def iso(epoch_ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds, e.g. 2026-06-01T14:30:00.000Z."""
    if epoch_ms is None:
        return None
    return _iso(epoch_ms)


@lru_cache(maxsize=1 << 16)  # an order's stage times repeat in every view written for it
def _iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def jsonable(value: Any) -> Any:
    """A copy with datetimes turned into epoch ms (lists for tuples)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return ms(value)
    return value
