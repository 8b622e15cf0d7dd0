"""What ``kuailv run`` says about the decisions from history: the models the workers load and what they
predicted this run, the city's KPIs of the run's days, and the stock levels and replenishment suggestions.

``describe`` is printed before the workers start (the same resolution the workers make at start-up:
``config.eta_model``); ``summary`` after they caught up: how many of the run's orders got a delay risk
from the model, the highest risk seen, how many "likely late" notices opened, and how many vans carry a
suggested stop order.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from config.settings import Settings


def describe(settings: Settings) -> str:
    """One line: the ETA / delay-risk model (with its held-out figures) and the stop order the engines use."""
    from config.eta_model import EtaModelError, choose

    try:
        choice = choose(settings)
    except EtaModelError as exc:
        return f"models: REFUSED: {exc}"
    if choice.artifact is None:
        return (f"models: ETA {choice.name} (no trained model: run `kuailv train`, or KUAILV_ETA_MODEL); stop "
                f"order {choice.planner_name}")
    manifest = json.loads((choice.artifact / "manifest.json").read_text())
    metrics = manifest.get("metrics") or {}
    figures = ", ".join(f"{k} {v:.3g}" for k, v in _headline(metrics).items())
    data = manifest.get("data") or {}
    trained = f"{data.get('from', '?')[:10]}..{data.get('to', '?')[:10]}"
    return (f"models: ETA and delay risk {choice.name} (trained on simulated {trained}; held-out {figures}); "
            f"stop order {choice.planner_name}")


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The figures people ask for first: the risk model's ROC-AUC, the ETA's MAE and its cut vs the baseline."""
    risk, eta = metrics.get("risk") or {}, metrics.get("eta") or {}
    out = {"ROC-AUC": (risk.get("model") or {}).get("roc_auc"),
           "ETA MAE min": ((eta.get("model") or {}).get("mae_s") or 0) / 60 or None,
           "MAE cut vs baseline": eta.get("mae_reduction")}
    return {k: v for k, v in out.items() if isinstance(v, int | float)}


def summary(settings: Settings, order_ids: list[str]) -> str:
    """One line about the run's orders: late risks published, the highest, likely-late notices, stop orders."""
    from streams.queries import pooled_client
    from streams.sinks.redis_alerts import RedisAlerts
    from streams.sinks.redis_geofences import RedisGeofenceStates

    with pooled_client(settings) as r:
        etas = RedisGeofenceStates(r, settings.redis_prefix)
        raw = r.mget([etas.eta_key(o) for o in order_ids]) if order_ids else []
        risks = [e["late_risk"] for e in (orjson.loads(x) for x in raw if x) if e.get("late_risk") is not None]
        alerts = RedisAlerts(r, settings.redis_prefix).listing(open_only=False, limit=5000)
    mine = set(order_ids)
    late = [a for a in alerts if a["rule_id"] == "likely-late" and a.get("order_id") in mine]
    if not risks:
        return f"models: no order of this run got a late risk ({len(order_ids)} orders; baseline ETAs only)"
    return (f"models: {len(risks)} of {len(order_ids)} orders got a late risk from the model (highest "
            f"{max(risks):.2f}); {len(late)} likely-late notices opened")


def kpi_summary(settings: Settings, order_ids: list[str]) -> str:
    """The city's KPI figures of the run's days (the Beijing date in each order id: KL + YYYYMMDD + seq)."""
    from streams.queries import pooled_client
    from streams.sinks.redis_kpis import RedisKpis

    days = sorted({f"{o[2:6]}-{o[6:8]}-{o[8:10]}" for o in order_ids if len(o) >= 10})
    with pooled_client(settings) as r:
        found = [f for d in days if (f := RedisKpis(r, settings.redis_prefix).figures("city", "all", d))]
    if not found:
        return f"kpis: no city figures yet for {', '.join(days) or 'this run'} (kuailv kpis --dimension city)"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    days_text = "; ".join(
        f"city {f['day']}: {f['orders']} orders, fulfilment {pct(f['fulfilment_rate'])}, on time "
        f"{pct(f['on_time_rate'])}, delivery p50/p90 {_minutes(f['delivery_p50_ms'])}/"
        f"{_minutes(f['delivery_p90_ms'])}, loss {pct(f['loss_rate'])}" for f in found)
    return f"kpis: {days_text} (kuailv kpis --dimension warehouse|merchant|driver --day ...)"


def _minutes(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 60_000:.0f} min"


def stock_summary(settings: Settings) -> str:
    """Stock levels and replenishment suggestions of every warehouse the stock agent has seen."""
    from streams.queries import pooled_client
    from streams.sinks.redis_stock import RedisStock

    with pooled_client(settings) as r:
        warehouses = sorted({k.decode().rsplit(":", 1)[1] for k in r.scan_iter(f"{settings.redis_prefix}:stock:*")})
        store = RedisStock(r, settings.redis_prefix)
        levels = {wh: store.levels(wh) for wh in warehouses}
        suggestions = sum(len(store.suggestions(wh)) for wh in warehouses)
    skus = sum(len(v) for v in levels.values())
    low = sum(1 for v in levels.values() for level in v.values()
              if level.get("reorder_point") is not None and level["on_hand"] < level["reorder_point"])
    return (f"stock: {skus} SKU levels in {len(warehouses)} warehouses, {low} below their reorder point, "
            f"{suggestions} replenishment suggestions (Redis stock:/replenishment:{{warehouse}}; docs/stock.md)")
