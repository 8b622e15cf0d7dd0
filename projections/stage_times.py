"""Stage times of an order from its van's geofences: a derived fact, never an order event. Pure.

The per-driver geofence fold (``projections.geofence``) knows every order on the van (its ``sites``)
and decides the van's transitions in event time, with hysteresis, lateness and duplicates handled.
From those transitions it dates three stages of the order's **current dispatch**:

* ``arrived_warehouse_at``: the van entered the order's warehouse, i.e. a ``WAREHOUSE`` fence of the
  fence file whose ``warehouse_id`` is the order's. A van is normally loaded inside that fence, so
  when the order is put on the van (a new dispatch) while the van is in such a fence, it is the
  ENTER of that visit (if it began at most ``MAX_VISIT_MS``, 6 h, before: not a van parked there
  since the day before); otherwise the next such ENTER while the order is on board;
* ``arrived_customer_at``: the ENTER of the order's customer site (``customer-site/<order id>``);
* ``left_customer_at``: the EXIT of that site.

Each is set once per dispatch (the first transition that dates it: a later visit in the same dispatch
does not move it, border jitter never makes one) and a new dispatch starts with none. They are
transition times, so they are event times, deterministic and re-derivable from the GPS and van-order
logs; a late ping (dead-lettered by the fold) never sets one.

**Why not an order event.** The order aggregate stays the only writer of order events. GPS is
telemetry, not a command: it can be late, jittery, replayed and re-derived, and the aggregate has
nothing to decide about it. The stage times live in the order's tracking record, the ``OrderEta``
on ``kuailv.order-etas.v1`` (compacted, keyed by order id; Redis ``eta:{order}``), and the order
view merges them at read time (``projections.order_view.with_live_eta``).

**When a record goes out.** A stage time set by a released ping or van order is *due* until a
record of the order carries it:

* the order's next estimate carries it (``projections.van_eta`` adds the stage times of the dispatch
  to every ``OrderEta`` and publishes the estimate of an order with due stage times at once);
* otherwise the same ping publishes a record carrying the last estimate published for this dispatch
  unchanged (``eta``, ``computed_at``, ``distance_m``, ...): only ``updated_at`` and the stage times
  move. ``eta`` is not nullable in the schema, so a record is never sent without an estimate:
* with no estimate for this dispatch yet (ETAs are made every 30 s of event time; an order put on a
  van standing in its warehouse gets its first one at the next tick), the stage times wait for it
  while the order is still to be delivered by this van; if the van has been to the customer and
  left without one (dispatched less than a tick before arriving), the record's estimate is the
  observed arrival (``eta`` = ``computed_at`` = ``arrived_customer_at``, no distance, no stop before,
  estimator ``geofence/arrival``); a dispatch that ends with neither is not published, nor is
  anything after the order was taken off this van (``OFF_BOARD``: a re-dispatch's van takes over).

``updated_at`` is the event time the record was decided at (``computed_at`` for a new estimate, the
ping that set a stage otherwise): keep the record with the highest (``dispatch_count``,
``updated_at``) per order. Stage times are kept only when the fold makes ETAs (``GeoContext.eta``).
Site state (JSON): ``stages`` (``{"dispatch": n, <field>: ms, ...}``), ``stages_due`` and ``last``
(the last record published for the order); the driver's ``stages_due`` says whether any site has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.fences import Fence

FIELDS = ("arrived_warehouse_at", "arrived_customer_at", "left_customer_at")
ARRIVAL_ESTIMATOR = "geofence/arrival"
MAX_VISIT_MS = 6 * 3600_000  # a warehouse visit older than this at dispatch is not this order's arrival


def of(site: Mapping[str, Any]) -> dict[str, int | None]:
    """The stage times of the site's current dispatch, by ``OrderEta`` field (None: not reached)."""
    stages = site.get("stages")
    if stages is None or stages["dispatch"] != site["dispatch"]:
        return dict.fromkeys(FIELDS)
    return {f: stages.get(f) for f in FIELDS}


def _set(st: dict[str, Any], order_id: str, field: str, at: int | None) -> None:
    """Date ``field`` of the order's current dispatch, unless it is dated already (copy-on-write: the
    site dicts may be shared with the input state)."""
    site = st["sites"].get(order_id)
    if site is None or at is None:
        return
    stages = site.get("stages")
    if stages is None or stages["dispatch"] != site["dispatch"]:
        stages = {"dispatch": site["dispatch"]}
    if stages.get(field) is not None:
        return
    st["sites"][order_id] = {**site, "stages": {**stages, field: at}, "stages_due": True}
    st["stages_due"] = True


def _waiting(site: Mapping[str, Any]) -> bool:
    """Still to be delivered by this van in this dispatch (``projections.geofence.on_board``)."""
    return site["state"] == "ON_BOARD" and site.get("visited") != site["dispatch"]


def _is_warehouse_of(fence: Fence | None, site: Mapping[str, Any]) -> bool:
    return fence is not None and fence.kind == "WAREHOUSE" and fence.warehouse_id == site["warehouse_id"]


def on_dispatch(st: dict[str, Any], order_id: str, by_id: Mapping[str, Fence], at: int) -> None:
    """The order was just put on the van at ``at`` (a new dispatch): stage times start afresh, and if
    the van is in a fence of the order's warehouse, having entered it at most ``MAX_VISIT_MS`` before,
    it arrived there at the ENTER of that visit. (A van parked in the yard since an earlier day did not
    arrive for this order: its stage waits for the next ENTER.)"""
    site = st["sites"][order_id]
    st["sites"][order_id] = {**site, "stages_due": False}
    entered = [f["since"] for fid, f in st["fences"].items()
               if f["in"] and _is_warehouse_of(by_id.get(fid), site) and at - f["since"] <= MAX_VISIT_MS]
    if entered:
        _set(st, order_id, "arrived_warehouse_at", min(entered))


def from_transitions(st: dict[str, Any], transitions: Sequence[Mapping[str, Any]]) -> None:
    """Date the stages these transitions (of one released ping, in order) reach."""
    for t in transitions:
        kind = t["kind"]
        if kind == "DWELL":
            continue
        if t["fence_kind"] == "CUSTOMER_SITE":
            if kind == "ENTER":
                _set(st, t["order_id"], "arrived_customer_at", t["at"])
            else:  # EXIT; a visit begun before the dispatch dates the arrival by its ENTER
                _set(st, t["order_id"], "arrived_customer_at", t["entered_at"])
                _set(st, t["order_id"], "left_customer_at", t["at"])
        elif t["fence_kind"] == "WAREHOUSE" and kind == "ENTER":
            for oid, site in list(st["sites"].items()):
                if _waiting(site) and site["warehouse_id"] == t["warehouse_id"]:
                    _set(st, oid, "arrived_warehouse_at", t["at"])


def published(site: dict[str, Any], record: dict[str, Any]) -> None:
    """``site`` (a fresh copy) now carries ``record`` as the order's last record; nothing is due."""
    site["last"] = record
    site["stages_due"] = False


def flush(st: dict[str, Any], driver: str, vehicle: str, at: int, etas: list[dict[str, Any]]) -> None:
    """After a released ping at ``at`` (and the ETAs it made): publish the stage times still due, as
    the module doc says. Appends ``OrderEta`` records to ``etas``, in order id order."""
    if not st.get("stages_due"):
        return
    sites = st["sites"]
    due = False
    for oid in sorted(o for o, s in sites.items() if s.get("stages_due")):
        site = dict(sites[oid])
        stages = of(site)
        last = site.get("last")
        if site["state"] == "OFF_BOARD":
            site["stages_due"] = False  # taken off this van: its dispatch is over, the next van's records count
            sites[oid] = site
            continue
        if last is not None and last["dispatch_count"] == site["dispatch"]:
            record = {**last, **stages, "updated_at": at}
        elif _waiting(site):
            due = True  # its first estimate carries them
            continue
        elif stages["arrived_customer_at"] is not None:
            record = arrival_record(oid, driver, vehicle, site["dispatch"], stages, at)
        else:
            site["stages_due"] = False  # the dispatch ended with neither an estimate nor an arrival
            sites[oid] = site
            continue
        etas.append(record)
        published(site, record)
        sites[oid] = site
    st["stages_due"] = due


def arrival_record(order_id: str, driver: str, vehicle: str, dispatch: int, stages: Mapping[str, int | None],
                   at: int) -> dict[str, Any]:
    """An ``OrderEta`` whose estimate is the observed arrival at the customer (no estimate was made)."""
    arrived = stages["arrived_customer_at"]
    return {"order_id": order_id, "driver_id": driver, "vehicle_id": vehicle, "dispatch_count": dispatch,
            "eta": arrived, "computed_at": arrived, "distance_m": 0.0, "stops_before": 0, "speed_kmh": None,
            "estimator": ARRIVAL_ESTIMATOR, "late_risk": None, "window_end": None, **stages, "updated_at": at}
