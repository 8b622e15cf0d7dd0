"""The geofence and alert projections as configured (fence file, rules, lateness).

The worker's agents, ``kuailv replay`` and the Flink job (``jobs/timed_projection_job.py``) build
them here, so every engine runs the same configuration. Light imports only: ``.venv-flink`` has
the project's pure core but not its service clients.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from schemas.topics import GPS, ORDER_EVENTS, ROAD_CONDITIONS, SENSORS, VAN_ORDERS

# input topic -> record type
GEOFENCE_KINDS = {GPS.name: "GpsPing", VAN_ORDERS.name: "VanOrder", ROAD_CONDITIONS.name: "RoadConditions"}
GEOFENCE_TOPICS = tuple(GEOFENCE_KINDS)  # co-partitioned by driver, in merge-tie order
ALERT_KINDS = {ORDER_EVENTS.name: "OrderEvent", SENSORS.name: "SensorReading"}


def geofence_projection(settings: Settings, codec: Any) -> Any:
    """``GeofenceProjection`` from ``KUAILV_FENCES``, ``KUAILV_ALERT_RULES``, ``KUAILV_GEOFENCE_LATENESS_MS`` and
    the ETA model and stop order of ``KUAILV_ETA_MODEL`` / ``KUAILV_ROUTE_PLANNER`` (``config.eta_model``: loaded
    here, at start-up; a model that does not match the code is refused)."""
    from config.alert_rules import load_rules_file
    from config.eta_model import choose as choose_eta
    from config.geofences import load_fence_file
    from projections.fence_index import FenceIndex
    from projections.fleet import STATUS_INTERVAL_MS
    from projections.geofence import GeoContext
    from projections.geofence_step import GeofenceProjection
    from projections.van_eta import EtaSettings

    fences = load_fence_file(settings.fence_file)
    rules = load_rules_file(settings.alert_rules_file)
    soon = rules.by_kind("arriving-soon")
    silent = rules.by_kind("gps-silent")
    late = rules.by_kind("likely-late")
    model = choose_eta(settings)
    eta = EtaSettings(model.estimator, name=model.name,
                      soon_ms=round(soon.params.threshold_min * 60_000) if soon else None,
                      likely_late=(late.params.open_risk, late.params.resolve_risk) if late and model.learnt else None,
                      planner=model.planner)
    ctx = GeoContext(fences, settings.geofence_lateness_ms, eta,
                     silence_ms=round(silent.params.silence_min * 60_000) if silent else None,
                     status_ms=STATUS_INTERVAL_MS)
    return GeofenceProjection(codec, FenceIndex(fences), ctx, GEOFENCE_KINDS, rules)


def alert_projection(settings: Settings, codec: Any) -> Any:
    """``AlertProjection`` from ``KUAILV_ALERT_RULES``."""
    from config.alert_rules import load_rules_file
    from projections.alert_step import AlertProjection

    return AlertProjection(codec, load_rules_file(settings.alert_rules_file), ALERT_KINDS)


def fleet_projection(settings: Settings, codec: Any) -> Any:
    """``FleetProjection`` (re-dispatch suggestions, cold-chain exposure) from ``KUAILV_FLEET_CAPACITY_KG`` and
    ``KUAILV_ALERT_RULES``."""
    from config.alert_rules import load_rules_file
    from projections.fleet import FleetContext, FleetProjection

    return FleetProjection(codec, FleetContext(default_capacity_kg=settings.fleet_capacity_kg,
                                               rules=load_rules_file(settings.alert_rules_file)))


def stock_projection(settings: Settings, codec: Any, *, levels: bool = False) -> Any:
    """``StockProjection`` (levels, low-stock alerts, replenishment suggestions) from ``KUAILV_ALERT_RULES`` (the
    ``low-stock`` rule and its policy params); ``levels``: also a level point per movement (the worker's InfluxDB)."""
    from config.alert_rules import load_rules_file
    from projections.stock import StockContext, StockProjection

    return StockProjection(codec, StockContext(load_rules_file(settings.alert_rules_file), levels=levels))
