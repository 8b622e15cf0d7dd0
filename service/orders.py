"""The read side behind the API: Redis first; an order Redis does not have is rebuilt from the log.

Redis holds what the workers projected (``streams.queries.order_document``: the view with the live
position, tracking record, open alerts and re-dispatch suggestion merged in). A key can be missing
although the order exists: Redis was flushed, the worker is catching up, or the order is older
than a restore. Then ``order`` reads the order's partition of ``kuailv.order-events.v1`` (the
partition its id hashes to) and folds its events with the same pure fold, so the answer is never a
silent 404 for an order that is on the log; such a view says ``"source": "log"``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from config.settings import Settings
from projections.order_state import fold
from projections.order_view import public_view
from schemas.errors import CodecError
from schemas.partitioning import murmur2_partition
from schemas.topics import ORDER_EVENTS
from streams import queries

MAX_PAGE = 200


def order(settings: Settings, codec: Any, order_id: str) -> dict[str, Any] | None:
    doc = queries.order_document(settings, order_id)
    if doc is not None:
        return {**doc, "source": "redis"}
    view = rebuild_from_log(settings, codec, order_id)
    return None if view is None else {**view, "source": "log"}


def rebuild_from_log(settings: Settings, codec: Any, order_id: str) -> dict[str, Any] | None:
    from streams.replay import read_topic_batches

    topic = settings.topic_renames.get(ORDER_EVENTS.name, ORDER_EVENTS.name)
    key = order_id.encode()
    partition = murmur2_partition(key, ORDER_EVENTS.partitions)
    state = None
    for batch in read_topic_batches(settings.kafka_bootstrap, topic, partitions=[partition], timeout_s=10):
        for rec in batch:
            if rec.key != key or rec.value is None:
                continue
            try:
                decoded = codec.decode(rec.value)
            except CodecError:  # a record the workers dead-lettered: not part of the order
                continue
            if decoded.value.get("order_id") == order_id:
                state = fold(state, decoded.record_type, decoded.value).state
    if state is None or state.get("view") is None:
        return None
    return public_view(state["view"])


def matching_ids(settings: Settings, scope: Mapping[str, str | None]) -> set[str]:
    """The ids every given index agrees on (status, customer, driver, warehouse: the Redis index sets,
    intersected), so a page is cut from the matching orders, not filtered after it."""
    sets = [queries.order_ids(settings, **{k: v}) for k, v in scope.items()
            if k in ("status", "customer", "driver", "warehouse") and v]
    return set.intersection(*sets) if sets else set()


def page(ids: set[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    """Ids after ``cursor`` in id order, at most ``limit``; the next cursor (None: the last page)."""
    after = decode_cursor(cursor) if cursor else ""
    ordered = sorted(i for i in ids if i > after)
    chosen = ordered[:limit]
    more = len(ordered) > limit
    return chosen, encode_cursor(chosen[-1]) if more and chosen else None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cursor {cursor!r} is not one this API gave out") from exc
