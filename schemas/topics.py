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

ALL_TOPICS: tuple[TopicSpec, ...] = (ORDER_EVENTS, GPS, SENSORS, ORDER_STATE, DEAD_LETTERS, VAN_ORDERS,
                                     GEOFENCE_TRANSITIONS, ALERTS, ORDER_ETAS, FLEET, REDISPATCH_SUGGESTIONS,
                                     WEBHOOK_DEAD_LETTERS)


def topic_for_record(record_name: str) -> TopicSpec:
    """The topic a record type (short name, e.g. ``GpsPing``) is published on."""
    for spec in ALL_TOPICS:
        if record_name in spec.records:
            return spec
    raise KeyError(f"no topic carries record type {record_name!r}")
