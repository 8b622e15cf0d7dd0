"""Delivery KPIs: each order's contribution to its windows, and a window's figures. Pure.

``order_facts(view)`` reads one order view (``kuailv.projections.OrderState``, times as epoch ms);
``contribution(facts, exposures)`` adds the cold-chain exposure of the order (how many
``cold-chain-exposure`` alerts name it); ``window_keys(facts)`` are the windows the order belongs to;
``figures(key, entries)`` computes a window's ``KpiFigures`` from the *set* of its orders'
latest contributions (never from counters), so duplicates, re-delivery, reordering and full
replays give the same figures. The formulas are specified in ``docs/kpis.md``; in short:

* day: the Beijing date (UTC+8) of the order's delivery window start;
* an order is *decided* when its delivery outcome is known: delivered, refused, or out of stock
  (cancelled orders are never decided; orders still in progress are counted in ``orders`` only);
* fulfilment rate = lines delivered in full / lines ordered, over decided orders;
* on-time rate = orders delivered at or before their window end / orders delivered;
* delivery time = delivered - (last) dispatched (event times); percentiles p50/p90/p95 by nearest rank;
* loss rate = lost kg / scale kg over decided orders, where lost kg is the whole scale weight of
  a refused or exposed order, else the weight picked but not delivered plus the weight returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

BEIJING = timezone(timedelta(hours=8))
DAY_MS = 86_400_000
BEIJING_OFFSET_MS = 8 * 3_600_000
DIMENSIONS = ("city", "warehouse", "merchant", "driver")
CITY_ID = "all"
PERCENTILES = (50, 90, 95)
KG = 3  # decimals kept of every weight
RATE = 6  # decimals kept of every rate

View = Mapping[str, Any]


def beijing_day(at_ms: int) -> str:
    """The Beijing calendar date (``YYYY-MM-DD``) of an epoch-ms instant."""
    return datetime.fromtimestamp(at_ms / 1000, tz=BEIJING).strftime("%Y-%m-%d")


def day_start_ms(day: str) -> int:
    """Epoch ms of Beijing midnight starting ``day``."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(start.timestamp() * 1000) - BEIJING_OFFSET_MS


def window_key(dimension: str, dimension_id: str, day: str) -> str:
    """The message key (and Redis name) of a window: ``<dimension>|<id>|<day>``."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown KPI dimension {dimension!r}; known: {', '.join(DIMENSIONS)}")
    return f"{dimension}|{dimension_id}|{day}"


def parse_window_key(key: str) -> tuple[str, str, str]:
    dimension, dimension_id, day = key.split("|")
    return dimension, dimension_id, day


def _kg(value: float) -> float:
    return round(value + 0.0, KG)


def order_facts(view: View) -> dict[str, Any]:
    """Everything the KPIs need from one order view (no exposure yet)."""
    stages = view["stages"]
    status = view["status"]
    delivered_at = stages.get("delivered")
    refused = "refused" in stages
    decided = status != "CANCELLED" and (delivered_at is not None or refused or status == "OUT_OF_STOCK")
    lines = view["lines"]
    scale = short = returned = 0.0
    full = 0
    for line in lines:
        measured, picked = line.get("measured_kg"), line.get("picked")
        delivered = line.get("delivered")
        if delivered_at is not None and delivered is not None and delivered >= line["ordered"]:
            full += 1
        if measured is None:
            continue
        scale += measured
        per_unit = measured / picked if picked else 0.0
        if delivered_at is not None:
            got = delivered or 0.0
            short += per_unit * max((picked or 0.0) - got, 0.0)
            returned += per_unit * min(line.get("returned") or 0.0, got)
    dispatched = stages.get("dispatched")
    driver = view.get("driver")
    return {
        "order_id": view["order_id"], "order_version": view["version"], "updated_at": view["updated_at"],
        "day": beijing_day(view["delivery_window_start"]), "warehouse_id": view["warehouse_id"],
        "merchant_id": view["customer_id"], "driver_id": None if driver is None else driver["driver_id"],
        "status": status, "decided": decided, "cancelled": status == "CANCELLED",
        "lines_ordered": len(lines) if decided else 0, "lines_full": full if decided else 0,
        "delivered": delivered_at is not None, "refused": refused,
        "on_time": delivered_at is not None and delivered_at <= view["delivery_window_end"],
        "delivery_ms": delivered_at - dispatched if delivered_at is not None and dispatched is not None else None,
        "scale_kg": _kg(scale) if decided else 0.0, "short_kg": _kg(short) if decided else 0.0,
        "returned_kg": _kg(returned) if decided else 0.0,
    }


def window_keys(facts: Mapping[str, Any]) -> list[str]:
    """The windows an order belongs to: the city, its warehouse, its merchant, its (current) driver."""
    day = facts["day"]
    keys = [window_key("city", CITY_ID, day), window_key("warehouse", facts["warehouse_id"], day),
            window_key("merchant", facts["merchant_id"], day)]
    if facts["driver_id"] is not None:
        keys.append(window_key("driver", facts["driver_id"], day))
    return keys


def contribution(facts: Mapping[str, Any], exposures: int, exposed_at: int | None = None) -> dict[str, Any]:
    """The order's contribution (``KpiContribution`` body, without the window): ``facts`` plus the loss
    split, given how many cold-chain exposure alerts name the order (``exposed_at``: the newest one's
    time, for ``updated_at``)."""
    decided, scale = facts["decided"], facts["scale_kg"]
    exposed = decided and exposures > 0
    whole = decided and (facts["refused"] or exposed)
    lost = scale if whole else _kg(facts["short_kg"] + facts["returned_kg"])
    updated = facts["updated_at"] if exposed_at is None else max(facts["updated_at"], exposed_at)
    return {"order_id": facts["order_id"], "order_version": facts["order_version"], "exposures": exposures,
            "counted": True, "decided": decided, "cancelled": facts["cancelled"],
            "lines_ordered": facts["lines_ordered"], "lines_full": facts["lines_full"],
            "delivered": facts["delivered"], "on_time": facts["on_time"], "delivery_ms": facts["delivery_ms"],
            "scale_kg": scale, "short_kg": facts["short_kg"] if decided else 0.0,
            "returned_kg": facts["returned_kg"] if decided else 0.0,
            "refused_kg": scale if decided and facts["refused"] else 0.0, "exposed_kg": scale if exposed else 0.0,
            "lost_kg": lost if decided else 0.0, "updated_at": updated}


def revision(entry: Mapping[str, Any]) -> tuple[int, int]:
    """Which of two contributions of one order is newer: both parts only grow in a stage-1 state."""
    return entry["order_version"], entry["exposures"]


def nearest_rank(sorted_values: list[int], p: int) -> int | None:
    """The nearest-rank ``p``-th percentile of ascending ``sorted_values`` (None when empty): the value at
    rank ceil(p/100 * n), 1-based."""
    n = len(sorted_values)
    if n == 0:
        return None
    return sorted_values[max(math.ceil(p * n / 100), 1) - 1]


def _rate(num: float, den: float) -> float | None:
    return None if den == 0 else round(num / den, RATE)


def figures(key: str, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A window's ``KpiFigures`` from its orders' latest contributions (``order_id`` -> entry); entries
    with ``counted`` false (the order moved to another window, e.g. re-dispatched) are left out."""
    dimension, dimension_id, day = parse_window_key(key)
    counted = [entries[k] for k in sorted(entries) if entries[k]["counted"]]
    decided = [e for e in counted if e["decided"]]
    delivered = [e for e in counted if e["delivered"]]
    times = sorted(e["delivery_ms"] for e in delivered if e["delivery_ms"] is not None)
    lines_ordered = sum(e["lines_ordered"] for e in decided)
    lines_full = sum(e["lines_full"] for e in decided)
    on_time = sum(1 for e in delivered if e["on_time"])

    def kg(name: str) -> float:
        return _kg(math.fsum(e[name] for e in decided))

    scale, lost = kg("scale_kg"), kg("lost_kg")
    out: dict[str, Any] = {
        "window_key": key, "dimension": dimension, "dimension_id": dimension_id, "day": day,
        "day_start": day_start_ms(day), "orders": len(counted), "orders_decided": len(decided),
        "orders_cancelled": sum(1 for e in counted if e["cancelled"]),
        "lines_ordered": lines_ordered, "lines_full": lines_full, "fulfilment_rate": _rate(lines_full, lines_ordered),
        "delivered": len(delivered), "on_time": on_time, "on_time_rate": _rate(on_time, len(delivered)),
        "scale_kg": scale, "lost_kg": lost, "short_kg": kg("short_kg"), "returned_kg": kg("returned_kg"),
        "refused_kg": kg("refused_kg"), "exposed_kg": kg("exposed_kg"),
        "exposed_orders": sum(1 for e in decided if e["exposures"] > 0),
        "loss_rate": _rate(lost, scale),
        "as_of": max((e["updated_at"] for e in counted), default=day_start_ms(day)),
    }
    for p in PERCENTILES:
        out[f"delivery_p{p}_ms"] = nearest_rank(times, p)
    return out


def latest(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest contribution per order of ``entries`` (any order, any duplicates)."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        cur = out.get(e["order_id"])
        if cur is None or revision(e) > revision(cur):
            out[e["order_id"]] = dict(e)
    return out
