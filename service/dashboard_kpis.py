"""``GET /dashboard/kpis``: a KPI window's figures of today (Redis, ``streams.sinks.redis_kpis``) and its intraday
series (InfluxDB measurement ``kpi_intraday``, written by ``streams.kpi_agent``; docs/kpis.md).

"Today" is the pipeline's, in event time: the Beijing day of the series' newest point (the replayed or simulated
days are not the wall clock's), the wall clock's day when there is none. The series is the points of the last
``days`` days up to that point, oldest first. InfluxDB not answering is 503, as for a GPS track.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.settings import Settings
from projections.kpis import beijing_day
from service.graphql_types import camel
from service.policy import Caller, kpi_scope
from service.reads import Invalid, Unavailable, allow
from service.track import (  # the track's InfluxQL helpers (v1 /query, epoch ms)
    TrackUnavailable,
    influx_literal,
    influx_query,
    influx_rows,
)
from streams import queries
from streams.sinks.redis_kpis import RedisKpis

DAY_MS = 86_400_000
MAX_DAYS = 90  # the Redis figures' lifetime (redis_kpis.STATE_TTL_S)
CITY_ID = "all"  # the city window's id (docs/kpis.md)
# kpi_intraday field -> series key
SERIES = {"orders": "orders", "fulfilment_rate": "fulfilment", "on_time_rate": "onTimeRate",
          "delivery_p50_ms": "deliveryP50Ms", "delivery_p90_ms": "deliveryP90Ms", "loss_rate": "lossRate"}
_INTS = ("orders", "delivery_p50_ms", "delivery_p90_ms")


def _where(dimension: str, dimension_id: str) -> str:
    return f"dimension = {influx_literal(dimension)} AND \"id\" = {influx_literal(dimension_id)}"


def point(row: Mapping[str, Any]) -> dict[str, Any]:
    """One series point from an InfluxDB row (``time`` in epoch ms, fields as written)."""
    out: dict[str, Any] = {"atMs": int(row["time"])}
    for field, key in SERIES.items():
        v = row.get(field)
        out[key] = None if v is None else int(v) if field in _INTS else float(v)
    if out["orders"] is None:
        out["orders"] = 0
    return out


def current_doc(figures: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``KpiFigures`` record camelCase (``fulfilment_rate`` -> ``fulfilmentRate``, ...)."""
    return None if figures is None else {camel(k): v for k, v in sorted(figures.items())}


def kpis(settings: Settings, who: Caller, dimension: str, dimension_id: str | None, days: int,
         now_ms: int) -> dict[str, Any]:
    wanted, access = kpi_scope(who, dimension, dimension_id)
    allow(access)
    p = settings.redis_prefix
    if wanted is None and dimension == "city":
        with queries.pooled_client(settings) as r:
            ids = sorted(m.decode() for m in r.smembers(RedisKpis(r, p).index_key("city", beijing_day(now_ms))))
        wanted = ids[0] if ids else CITY_ID
    if wanted is None:
        raise Invalid(f"give the {dimension}'s id (id=...)")
    where = _where(dimension, wanted)
    fields = ", ".join(SERIES)
    try:
        newest = influx_query(settings, f"SELECT last(orders) FROM kpi_intraday WHERE {where}")
        end = int(newest[0]["values"][0][0]) if newest else now_ms
        rows = influx_query(settings, f"SELECT {fields} FROM kpi_intraday WHERE {where} AND "
                                      f"time > {end - days * DAY_MS}ms AND time <= {end}ms ORDER BY time ASC")
    except TrackUnavailable as exc:
        raise Unavailable(f"KPI series of {dimension} {wanted}: {exc}") from exc
    day = beijing_day(end)
    with queries.pooled_client(settings) as r:
        figures = RedisKpis(r, p).figures(dimension, wanted, day)
    return {"dimension": dimension, "id": wanted, "day": day, "current": current_doc(figures),
            "series": [point(row) for row in influx_rows(rows)]}
