"""What the REST reads answer, as pydantic models: the OpenAPI document (``/openapi.json``) describes every
response from these, and the integration tests check each response body against it.

The shapes are the ones the reads produce (``projections.order_view.public_view`` and its merges,
camelCase with ISO-8601 times; alert records and driver fixes as stored, snake_case with epoch ms). Fields
that only some answers carry (``source``, ``etaUpdatedAt``, ``openAlerts``, ...) have defaults and the
endpoints answer with ``response_model_exclude_unset``, so a body holds exactly what the read returned.
``extra="allow"``: a field added to the view later still reaches clients (a unit test makes sure every
field the view has today is declared here).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from projections.order_status import OrderStatus


def _instant(description: str = "ISO-8601 UTC, milliseconds", *, optional: bool = False) -> Any:
    """A time as the view writes it (``2026-06-01T14:30:00.000Z``); ``optional``: absent from some answers."""
    if optional:
        return Field(None, description=description, json_schema_extra={"format": "date-time"})
    return Field(description=description, json_schema_extra={"format": "date-time"})


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


Out, instant = _Out, _instant  # public: the base and time field of the other answer modules (dashboard_models)


class GeoPoint(_Out):
    lat: float
    lng: float


class Location(GeoPoint):
    at: str | None = _instant("when the fix was taken", optional=True)
    source: str | None = Field(None, description="the event that reported it, or 'gps' (the live fix)")


class DriverInfo(_Out):
    driverId: str
    name: str
    phone: str | None = Field(description="null for warehouse staff (contact data)")
    vehicleId: str
    vehiclePlate: str
    location: Location | None = Field(description="null for warehouse staff")


class Item(_Out):
    lineNo: int
    sku: str
    name: str
    quantity: float
    unit: str
    available: float | None
    short: float
    picked: float | None
    expectedKg: float | None
    measuredKg: float | None
    delivered: float | None
    returned: float


class TimeWindow(_Out):
    start: str = _instant()
    end: str = _instant()


class ExceptionInfo(_Out):
    reasonCode: str
    description: str
    at: str = _instant()


class Signature(_Out):
    receiverName: str | None = Field(description="null for warehouse staff (contact data)")
    signatureRef: str
    photoRef: str | None
    at: str = _instant()


class Payment(_Out):
    paymentId: str
    amountCents: int
    method: str


class Claim(_Out):
    claimId: str
    claimedCents: int
    settledCents: int | None
    resolution: str | None


class OpenAlert(_Out):
    alertId: str
    ruleId: str
    severity: str
    openedAt: str = _instant()
    message: str
    audience: list[str]


class RedispatchSuggestion(_Out):
    toDriverId: str | None
    toVehicleId: str | None
    distanceM: float | None
    eta: str | None = _instant()
    decidedAt: str = _instant()
    reason: str
    excluded: dict[str, str]


class Order(_Out):
    """The order as the seed's scenario 1 shows it."""

    orderId: str
    status: OrderStatus
    version: int
    customerId: str
    warehouseId: str
    updatedAt: str = _instant()
    driverInfo: DriverInfo | None
    eta: str | None = _instant("the promised or GPS-estimated arrival")
    items: list[Item]
    shortLines: list[int]
    stages: dict[str, str] = Field(description="stage name -> ISO-8601 UTC time it was (last) reached")
    deliveryWindow: TimeWindow
    destination: GeoPoint | None = Field(description="null for warehouse staff (the delivery address)")
    dispatchCount: int
    exception: ExceptionInfo | None
    signature: Signature | None
    payment: Payment | None
    totalCents: int
    cancelReason: str | None
    refusalReason: str | None
    claim: Claim | None
    rejectedEvents: int
    etaUpdatedAt: str | None = _instant("when the GPS estimate was computed (while out for delivery)", optional=True)
    etaSource: str | None = None
    lateRisk: float | None = Field(None, ge=0, le=1, description="probability that the order arrives after its "
                                   "window, from the delay-risk model (while out for delivery)")
    openAlerts: list[OpenAlert] | None = None
    redispatchSuggestion: RedispatchSuggestion | None = None
    source: Literal["redis", "log"] | None = Field(None, description="log: rebuilt from the order-event log")


class OrderList(_Out):
    orders: list[Order]
    nextCursor: str | None = Field(description="give it as cursor for the next page; null on the last")


class Acknowledgement(_Out):
    by: str = Field(description="the subject of the operator or customer service agent who acknowledged it")
    at: str = _instant()


class Alert(_Out):
    """A ``kuailv.alerts.Alert`` record as the alert agent stored it (times in epoch ms), with its
    acknowledgement."""

    alert_id: str
    rule_id: str
    rule_version: int
    severity: Literal["INFO", "WARNING", "CRITICAL"]
    status: Literal["OPEN", "RESOLVED"]
    order_id: str | None
    driver_id: str | None
    vehicle_id: str | None
    warehouse_id: str | None
    customer_id: str | None
    opened_at: int
    updated_at: int
    resolved_at: int | None
    occurrences: int
    message: str
    evidence: dict[str, str]
    location: GeoPoint | None = Field(description="null for warehouse staff")
    audience: list[str]
    acknowledged: Acknowledgement | None = Field(description="who acknowledged it (POST /alerts/{id}/ack) and "
                                           "when; null while nobody has")


class Alerts(_Out):
    alerts: list[Alert]


class DriverLoad(_Out):
    """What the van carries as of the driver's newest status in the fleet view."""

    at: int = Field(description="event time of that status, epoch ms")
    vehicle_id: str
    load_kg: float = Field(description="weight of the orders on board and not yet delivered")
    orders_on_board: int
    order_ids: list[str] = Field(description="the ids among them the caller may see")
    stop_order: list[str] = Field(default_factory=list, description="the ones the caller may see that the van has "
                                  "not visited yet, in the suggested visiting order (the driver's route)")


class DriverPosition(_Out):
    driver_id: str
    vehicle_id: str
    event_id: str
    at: int = Field(description="event time of the fix, epoch ms")
    lat: float
    lng: float
    speed_kmh: float
    heading_deg: float
    load: DriverLoad | None = Field(description="null until the fleet view has a status of the driver")


class TrackPoint(_Out):
    at: str = _instant()
    lat: float
    lng: float
    speedKmh: float | None
    headingDeg: float | None


class Track(_Out):
    """The order's driver's GPS points from the dispatch to the delivery (or now), evenly thinned to limit."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    orderId: str
    driverId: str | None
    from_: str | None = Field(alias="from", description="dispatch time, ISO-8601 UTC",
                              json_schema_extra={"format": "date-time"})
    to: str | None = _instant("delivery time, or now while out for delivery")
    total: int = Field(description="points in the window before thinning")
    thinned: bool
    points: list[TrackPoint]


class Problem(BaseModel):
    """An error: what went wrong (a text, or FastAPI's list of invalid fields)."""

    detail: str | list[dict[str, Any]] | dict[str, Any]


READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "the policy's reason (another tenant's data, or not for this role)"},
    404: {"model": Problem, "description": "not found"},
    422: {"model": Problem, "description": "a parameter is invalid (named in detail)"},
    503: {"model": Problem, "description": "a store did not answer"},
}


class ErasureReport(BaseModel):
    """What an erasure did (``privacy.erasure``)."""

    subject: str = Field(description="the data subject, customer:<id>")
    keyVersionsDestroyed: int = Field(description="key versions destroyed (0: erased before)")
    orders: int = Field(description="the customer's orders found in the Redis index")
    viewsRewritten: int = Field(description="current views rewritten without the personal data (Redis + topic)")
    at: int = Field(description="when, epoch ms")
