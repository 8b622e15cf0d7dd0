"""The dashboard endpoints' answers (``service.dashboard_routes``) as pydantic models, in ``service.models``' style:
camelCase, times ISO-8601 UTC unless the name ends in ``Ms`` (epoch ms), ``extra="allow"``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.models import Out, instant


class FunnelStage(Out):
    stage: str = Field(description="an order status")
    medianMs: int | None = Field(description="median time spent in it by the sampled orders that left it")
    p90Ms: int | None
    orders: int = Field(description="sampled orders that left it (the samples of the median)")


class Funnel(Out):
    counts: dict[str, int] = Field(description="orders per status, every status (the Redis status sets, as kuailv "
                                               "stats counts them)")
    stages: list[FunnelStage] = Field(description="the main path CREATED..SIGNED, then the branches")
    sampled: int = Field(description="orders the stage times were computed over (the newest 5,000 per status)")
    asOf: str = instant("when it was computed (cached 5 s)")


class FleetDriver(Out):
    driverId: str
    vehicleId: str
    lat: float
    lng: float
    atMs: int = Field(description="event time of the newest GPS fix")
    speedKmh: float
    loadKg: float | None = Field(description="null until the fleet view has a status of the driver")
    ordersOnBoard: int | None
    coldChain: Literal["ok", "warning", "critical"] = Field(description="the worst open cold-chain alert of the "
                                                                        "driver or van")


class Fleet(Out):
    drivers: list[FleetDriver]
    asOf: str = instant()


class OrderMarker(Out):
    orderId: str
    status: str
    lat: float
    lng: float
    warehouseId: str
    driverId: str | None


class MapOrders(Out):
    orders: list[OrderMarker] = Field(description="the newest orders first, at most 5,000")
    total: int = Field(description="orders matching (active: not SIGNED, RETURNED, CLAIM_SETTLED, CANCELLED)")
    truncated: bool


class Warehouse(Out):
    id: str
    kind: Literal["WAREHOUSE", "DEPOT"]
    name: str | None
    lat: float = Field(description="a circle's centre, a polygon's centroid")
    lng: float


class Warehouses(Out):
    warehouses: list[Warehouse]


class KpiPoint(Out):
    atMs: int = Field(description="the window's newest contributing event time, floored to 5 minutes")
    orders: int
    fulfilment: float | None
    onTimeRate: float | None
    deliveryP50Ms: int | None
    deliveryP90Ms: int | None
    lossRate: float | None


class Kpis(Out):
    dimension: Literal["city", "warehouse", "merchant", "driver"]
    id: str
    day: str = Field(description="'today' (Beijing date): the day of the newest intraday point, the wall clock's "
                                 "without one")
    current: dict[str, int | float | str | None] | None = Field(description="that day's KpiFigures from Redis, "
                                                                           "camelCase (docs/kpis.md), or null")
    series: list[KpiPoint] = Field(description="kpi_intraday points of the last `days` days, oldest first")


class TopicRate(Out):
    topic: str
    eventsPerSec: float
    endOffset: int


class DeadLetterEntry(Out):
    reason: str
    reasonCode: str
    topic: str = Field(description="where the record was: its topic, partition, offset")
    partition: int
    offset: int
    atMs: int = Field(description="when the worker gave up on it")
    consumer: str


class DeadLetters(Out):
    total: int = Field(description="dead letters ever written (the topic's end offsets)")
    perSec: float
    recent: list[DeadLetterEntry] = Field(description="the newest 10, newest first")


class Pipeline(Out):
    topics: list[TopicRate] = Field(description="the input topics")
    consumerLag: dict[str, int] = Field(description="consumer group -> records not yet committed")
    deadLetters: DeadLetters
    openAlerts: int
    asOf: str = instant("when it was read (cached 3 s)")


class AckRequest(BaseModel):
    note: str | None = Field(None, max_length=500)


class Ack(Out):
    alertId: str
    acknowledgedBy: str
    acknowledgedAt: str = instant()


class StockLevel(Out):
    sku: str
    unit: str
    onHand: float
    reorderPoint: float | None = Field(description="null until the SKU has a plan (7 days of history)")
    low: bool = Field(description="on hand below the reorder point")
    day: str | None
    pickedToday: float
    shortToday: float
    receivedToday: float
    returnedToday: float
    updatedAt: str = instant()


class StockSuggestion(Out):
    """The SKU's latest ``ReplenishmentSuggestion`` (docs/stock.md), camelCase."""

    sku: str
    quantity: float = Field(description="suggested_quantity: what to order now")
    reason: str
    decidedAt: str = instant()
    onHand: float
    reorderPoint: float
    orderUpTo: float


class Stock(Out):
    warehouseId: str
    levels: list[StockLevel]
    suggestions: list[StockSuggestion]


class StockWarning(Out):
    sku: str
    name: str
    warehouseId: str
    onHand: float
    reorderPoint: float | None
    low: bool
    restockSuggested: float | None


class ShortLine(Out):
    orderId: str
    sku: str
    name: str
    short: float


class MerchantStock(Out):
    customerId: str
    warnings: list[StockWarning]
    shortLines: list[ShortLine]
