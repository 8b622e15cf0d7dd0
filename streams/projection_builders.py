"""The geofence and alert projections as configured (fence file, rules, lateness).

The worker's agents, ``kuailv replay`` and the Flink job (``jobs/timed_projection_job.py``) build
them here, so every engine runs the same configuration. Light imports only: ``.venv-flink`` has
the project's pure core but not its service clients.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from schemas.topics import GPS, ORDER_EVENTS, SENSORS, VAN_ORDERS

GEOFENCE_KINDS = {GPS.name: "GpsPing", VAN_ORDERS.name: "VanOrder"}  # input topic -> record type
ALERT_KINDS = {ORDER_EVENTS.name: "OrderEvent", SENSORS.name: "SensorReading"}


def geofence_projection(settings: Settings, codec: Any) -> Any:
    """``GeofenceProjection`` from ``KUAILV_FENCES``, ``KUAILV_ALERT_RULES``, ``KUAILV_GEOFENCE_LATENESS_MS``."""
    from config.alert_rules import load_rules_file
    from config.geofences import load_fence_file
    from projections.eta import DistanceSpeedEta
    from projections.fence_index import FenceIndex
    from projections.fleet import STATUS_INTERVAL_MS
    from projections.geofence import GeoContext
    from projections.geofence_step import GeofenceProjection
    from projections.van_eta import EtaSettings

    fences = load_fence_file(settings.fence_file)
    rules = load_rules_file(settings.alert_rules_file)
    soon = rules.by_kind("arriving-soon")
    silent = rules.by_kind("gps-silent")
    eta = EtaSettings(DistanceSpeedEta(), soon_ms=round(soon.params.threshold_min * 60_000) if soon else None)
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
