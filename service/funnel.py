"""The order funnel's time per status (``GET /dashboard/funnel``), from the order views' stage times. Pure.

A view keeps the LATEST time of each stage (``projections.order_status.TRANSITIONS``: the event that leads
to a status records its stage), so the time an order entered each status it went through is known, and the
time it spent in a status it LEFT is the entry time of the next status minus its own. Which status comes
next is read off the state machine: the statuses an order entered are sorted by time, and a pair of
neighbours counts only when the second may follow the first (``SUCCESSORS``). That drops what the
latest-time-only stages cannot tell: after a re-dispatch the first dispatch time is gone, so the time in
PICKING of a re-dispatched order is unknown (and not counted) while its exception handling (exception ->
re-dispatch) and its last delivery leg are.

``StockChecked`` leads to PAID or OUT_OF_STOCK; the view says which: every line short with nothing
available (``projections.order_status._stock_outcome``).

Medians and p90 are nearest-rank percentiles (``projections.kpis.nearest_rank``, as the KPIs), in ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from projections.kpis import nearest_rank
from projections.order_status import TRANSITIONS, OrderStatus

S = OrderStatus
# the main path, then the branches: the order the funnel lists its stages in
FUNNEL_ORDER: tuple[OrderStatus, ...] = (S.CREATED, S.PAID, S.PICKING, S.DELIVERING, S.SIGNED, S.OUT_OF_STOCK,
                                         S.EXCEPTION_HANDLING, S.RETURNING, S.RETURNED, S.CLAIMING, S.CLAIM_SETTLED,
                                         S.CANCELLED)
CLOSED = frozenset({S.SIGNED, S.RETURNED, S.CLAIM_SETTLED, S.CANCELLED})  # not "active" on the order map
OUT_OF_STOCK_STAGE = "stock_checked"


def _entered_by_stage() -> dict[str, OrderStatus]:
    """stage name -> the status its event leads to (events that keep the status record no status entry)."""
    return {t.stage: t.target for t in TRANSITIONS.values() if isinstance(t.target, OrderStatus)}


def _successors() -> dict[OrderStatus, frozenset[OrderStatus]]:
    nxt: dict[OrderStatus, set[OrderStatus]] = {s: set() for s in OrderStatus}
    for t in TRANSITIONS.values():
        targets = {t.target} if isinstance(t.target, OrderStatus) else {S.PAID, S.OUT_OF_STOCK} if t.target else set()
        for source in t.sources:
            if source is not None:
                nxt[source] |= {target for target in targets if target != source}
    return {s: frozenset(v) for s, v in nxt.items()}


ENTERED_BY_STAGE = _entered_by_stage()
SUCCESSORS = _successors()


def went_out_of_stock(view: Mapping[str, Any]) -> bool:
    """Did the stock check send the order to OUT_OF_STOCK (every line short, nothing available)?"""
    lines = view.get("lines") or []
    return OUT_OF_STOCK_STAGE in (view.get("stages") or {}) and bool(lines) and all(
        ln.get("available") is not None and ln["available"] <= 0 and (ln.get("short") or 0) > 0 for ln in lines)


def entries(view: Mapping[str, Any]) -> list[tuple[OrderStatus, int]]:
    """The statuses the order entered with the (latest) time it entered each, in time order (a view with
    epoch-ms stage times, as ``RedisOrderStore.projection`` gives it)."""
    at: dict[OrderStatus, int] = {}
    for stage, ms in (view.get("stages") or {}).items():
        status = ENTERED_BY_STAGE.get(stage)
        if stage == OUT_OF_STOCK_STAGE and went_out_of_stock(view):
            status = S.OUT_OF_STOCK
        if status is not None and ms is not None:
            at[status] = max(at.get(status, ms), int(ms))
    rank = {s: i for i, s in enumerate(FUNNEL_ORDER)}
    return sorted(at.items(), key=lambda e: (e[1], rank[e[0]]))


def durations(view: Mapping[str, Any]) -> list[tuple[OrderStatus, int]]:
    """(status, ms spent in it) for every status the order is known to have left (see the module doc)."""
    seq = entries(view)
    redispatched = (view.get("dispatch_count") or 0) > 1
    out = []
    for (status, since), (after, until) in pairwise(seq):
        if after not in SUCCESSORS[status]:
            continue
        if status is S.PICKING and after is S.DELIVERING and redispatched:
            continue  # the dispatch that left PICKING was overwritten by the re-dispatch
        out.append((status, until - since))
    return out


def stage_summary(samples: Iterable[tuple[OrderStatus | str, int]]) -> list[dict[str, Any]]:
    """One entry per status in ``FUNNEL_ORDER``: the median and p90 of the times spent in it (ms; null without
    a sample) and how many orders left it."""
    by: dict[OrderStatus, list[int]] = {s: [] for s in FUNNEL_ORDER}
    for status, ms in samples:
        by[OrderStatus(status)].append(ms)
    out = []
    for status in FUNNEL_ORDER:
        times = sorted(by[status])
        out.append({"stage": status.value, "medianMs": nearest_rank(times, 50), "p90Ms": nearest_rank(times, 90),
                    "orders": len(times)})
    return out


def all_counts(by_status: Mapping[str, int]) -> dict[str, int]:
    """Every status with its count (``streams.queries.progress``'s ``by_status`` leaves zeros out)."""
    return {s.value: int(by_status.get(s.value, 0)) for s in OrderStatus}


def newest(ids: Iterable[str], limit: int) -> list[str]:
    """The ``limit`` newest order ids, newest first (ids are ``KL`` + Beijing date + the day's sequence, so the
    newest sort last)."""
    return sorted(ids, reverse=True)[:limit]


def active(status: str) -> bool:
    return OrderStatus(status) not in CLOSED
