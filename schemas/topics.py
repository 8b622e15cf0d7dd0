"""The topic contract: names, keys, partition counts and retention.

Pure data, no I/O. ``infra.topics`` creates these topics; producers and
consumers import the names from here so a rename is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    records: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


ORDER_EVENTS = TopicSpec(
    name="kuailv.order-events.v1",
    key="order_id",
    partitions=6,
    records=(
        "OrderCreated", "PaymentConfirmed", "StockChecked", "PickingStarted",
        "LineWeighed", "OrderPacked", "OrderDispatched", "OrderDelivered",
        "DeliveryRefused", "ReturnStarted", "ReturnCompleted", "DamageClaimOpened",
        "DamageClaimSettled", "OrderCancelled", "ExceptionReported",
    ),
    # The order log is the source of truth: keep it forever (replay, audit).
    config={"cleanup.policy": "delete", "retention.ms": "-1", "min.insync.replicas": "1"},
    doc="Every order lifecycle event, keyed by order id, in per-order version order.",
)

GPS = TopicSpec(
    name="kuailv.gps.v1",
    key="driver_id",
    partitions=6,
    records=("GpsPing",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Driver GPS pings every few seconds, keyed by driver id. Raw telemetry: 7 days.",
)

SENSORS = TopicSpec(
    name="kuailv.sensors.v1",
    key="device_id",
    partitions=6,
    records=("SensorReading",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Cold-chain temperature/humidity readings, keyed by device id. Raw telemetry: 7 days.",
)

ROAD_CONDITIONS = TopicSpec(
    name="kuailv.road-conditions.v1",
    key="driver_id",
    partitions=GPS.partitions,  # co-partitioned with GPS: the driver fold joins them in event time
    records=("RoadConditions",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Traffic index, rain and temperature around each van on duty, every few minutes, keyed by driver id "
        "(the navigation provider's figures as the driver app reports them). Model features. 7 days.",
)

ORDER_STATE = TopicSpec(
    name="kuailv.order-state.v1",
    key="order_id",
    partitions=6,
    records=("OrderState",),
    config={
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": str(3600 * 1000),
    },
    doc="Latest order-state projection per order (compacted): the read model for other systems.",
)

DEAD_LETTERS = TopicSpec(
    name="kuailv.dead-letters.v1",
    key="source topic/partition/offset",
    partitions=3,
    records=("DeadLetter",),
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    doc="Records a worker could not process, with the reason and their position. 30 days.",
)

VAN_ORDERS = TopicSpec(
    name="kuailv.van-orders.v1",
    key="driver_id",
    partitions=GPS.partitions,  # co-partitioned with GPS: a driver's pings and orders meet in one partition
    records=("VanOrder",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Repartition topic: an order's place on a van (on board, delivered, off board), keyed by driver id, "
        "published by the order projection. Not compacted: one driver carries many orders. 7 days.",
)

GEOFENCE_TRANSITIONS = TopicSpec(
    name="kuailv.geofence-transitions.v1",
    key="driver_id",
    partitions=GPS.partitions,
    records=("GeofenceTransition",),
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    doc="ENTER / EXIT / DWELL of a driver at warehouses, depots, no-go zones and customer sites, decided in "
        "event time with hysteresis, keyed by driver id. Ids are deterministic: deduplicate on transition_id. "
        "30 days.",
)

ALERTS = TopicSpec(
    name="kuailv.alerts.v1",
    key="alert_id",
    partitions=6,
    records=("Alert",),
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)},
    doc="Alerts and notices (compacted, keyed by alert id): the latest record is the alert's state, "
        "OPEN or RESOLVED.",
)

ORDER_ETAS = TopicSpec(
    name="kuailv.order-etas.v1",
    key="order_id",
    partitions=6,
    records=("OrderEta",),
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)},
    doc="The tracking record per order on a van (compacted, keyed by order id), from the van's GPS: the latest "
        "arrival estimate and the stage times of the dispatch derived from geofences (derived facts, not order "
        "events).",
)

FLEET = TopicSpec(
    name="kuailv.fleet.v1",
    key="driver_id (DriverStatus) / order_id (RedispatchRequest) / vehicle_id (SensorReading)",
    partitions=1,  # one consumer sees the whole fleet in one order (shard by region for a bigger city)
    records=("DriverStatus", "RedispatchRequest", "SensorReading"),
    config={"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
    doc="Repartition topic of the fleet-wide view: each driver's last fix and load (DriverStatus, from the geofence "
        "projection), the orders whose van stopped after an incident (RedispatchRequest, from the order projection) "
        "and the vans' sensor readings (SensorReading, forwarded by the alert projection: cold-chain exposure per "
        "trip needs the orders on board). One partition. 1 day.",
)

REDISPATCH_SUGGESTIONS = TopicSpec(
    name="kuailv.redispatch-suggestions.v1",
    key="order_id",
    partitions=3,
    records=("RedispatchSuggestion",),
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)},
    doc="The proposed new driver for an order whose van stopped after an incident (compacted, keyed by order id): "
        "nearest available driver with room, distance, new ETA and why the others were passed over.",
)

WEBHOOK_DEAD_LETTERS = TopicSpec(
    name="kuailv.webhook-dead-letters.v1",
    key="delivery_id",
    partitions=3,
    records=("WebhookDeadLetter",),
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
    doc="Webhook deliveries given up after the last attempt (or on 410 Gone, or when their subscription was "
        "disabled), keyed by delivery id (the webhook-id): the subscription, the source position, the last status "
        "or error, the attempts and the body. 30 days.",
)

KPI_EXPOSURES = TopicSpec(
    name="kuailv.kpi-exposures.v1",
    key="order_id",
    partitions=ORDER_STATE.partitions,  # co-partitioned with the order views: the KPI order stage joins them
    records=("KpiExposure",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Repartition topic: an order named by a cold-chain-exposure alert (one record per alert and order), keyed "
        "by order id, from the KPI exposure stage. Not compacted: an order can be on several exposed trips. 7 days.",
)

KPI_CONTRIBUTIONS = TopicSpec(
    name="kuailv.kpi-contributions.v1",
    key="window_key",
    partitions=6,
    records=("KpiContribution",),
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    doc="Repartition topic: one order's contribution to a KPI window (<dimension>|<id>|<day>), keyed by window, so "
        "that one consumer holds a window's whole state. Keep the highest (order_version, exposures). 7 days.",
)

KPIS = TopicSpec(
    name="kuailv.kpis.v1",
    key="window_key",
    partitions=3,
    records=("KpiFigures",),
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)},
    doc="KPI figures per window: fulfilment, on-time, delivery time percentiles, loss, per city, warehouse, "
        "merchant and driver and Beijing day (compacted, keyed by <dimension>|<id>|<day>).",
)

STOCK = TopicSpec(
    name="kuailv.stock.v1",
    key="warehouse_id/sku",
    partitions=6,
    records=("StockMovement",),
    config={"cleanup.policy": "delete", "retention.ms": str(35 * DAY_MS)},
    doc="Stock movements from the warehouse management system (receipts, picks, shortages, restocked returns, "
        "stock takes), keyed by warehouse_id/sku. 35 days: the replenishment forecast reads 28 days of history.",
)

REPLENISHMENT_SUGGESTIONS = TopicSpec(
    name="kuailv.replenishment-suggestions.v1",
    key="stock_key",
    partitions=3,
    records=("ReplenishmentSuggestion",),
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)},
    doc="What to order per warehouse and SKU (compacted, keyed by warehouse_id/sku): the demand forecast, lead-time "
        "demand, safety stock, reorder point, order-up-to level and the quantity to order now.",
)


ALL_TOPICS: tuple[TopicSpec, ...] = (ORDER_EVENTS, GPS, SENSORS, ROAD_CONDITIONS, ORDER_STATE, DEAD_LETTERS, VAN_ORDERS,
                                     GEOFENCE_TRANSITIONS, ALERTS, ORDER_ETAS, FLEET, REDISPATCH_SUGGESTIONS,
                                     WEBHOOK_DEAD_LETTERS, KPI_EXPOSURES, KPI_CONTRIBUTIONS, KPIS,
                                     STOCK, REPLENISHMENT_SUGGESTIONS)


def topic_for_record(record_name: str) -> TopicSpec:
    """The topic a record type (short name, e.g. ``GpsPing``) is published on."""
    for spec in ALL_TOPICS:
        if record_name in spec.records:
            return spec
    raise KeyError(f"no topic carries record type {record_name!r}")
