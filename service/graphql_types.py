"""The leaf types of the GraphQL schema (``service.graphql_api``) and their conversion from what the reads
return (``service.reads``). Field names are snake_case here and camelCase in the schema (Strawberry's
default). Times are ISO-8601 UTC strings, as in the REST order view (GraphQL's Int is 32-bit: no epoch ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry

from projections.order_status import OrderStatus as OrderStatusEnum
from projections.timefmt import iso

OrderStatus = strawberry.enum(OrderStatusEnum, name="OrderStatus", description="The order state machine's states.")


@strawberry.type(description="WGS-84 coordinates in decimal degrees.")
class GeoPoint:
    lat: float
    lng: float


@strawberry.type(description="A reported position of the van: when, and which event (or 'gps') said so.")
class Location:
    lat: float
    lng: float
    at: str | None
    source: str | None


@strawberry.type(description="The driver as the order knows them (phone and location are null for warehouse "
                             "staff).")
class DriverInfo:
    driver_id: str
    name: str
    phone: str | None
    vehicle_id: str
    vehicle_plate: str
    location: Location | None


@strawberry.type(description="The driver's newest GPS fix.")
class DriverPosition:
    at: str
    lat: float
    lng: float
    speed_kmh: float
    heading_deg: float
    vehicle_id: str


@strawberry.type(description="What the van carries as of the driver's newest status in the fleet view.")
class DriverLoad:
    at: str
    vehicle_id: str
    load_kg: float
    orders_on_board: int
    order_ids: list[str] = strawberry.field(description="The ids among them the caller may see.")
    stop_order: list[str] = strawberry.field(description="The ones the caller may see that the van has not visited "
                                                         "yet, in the suggested visiting order (the driver's route).")


@strawberry.type(description="One order line: ordered, available, picked, weighed, delivered, returned.")
class OrderLine:
    line_no: int
    sku: str
    name: str
    quantity: float
    unit: str
    available: float | None
    short: float
    picked: float | None
    expected_kg: float | None
    measured_kg: float | None
    delivered: float | None
    returned: float


@strawberry.type(description="A stage of the order and the time it was (last) reached.")
class Stage:
    name: str
    at: str


@strawberry.type
class TimeWindow:
    start: str
    end: str


@strawberry.type
class OrderException:
    reason_code: str
    description: str
    at: str


@strawberry.type
class Signature:
    receiver_name: str | None
    signature_ref: str
    photo_ref: str | None
    at: str


@strawberry.type
class Payment:
    payment_id: str
    amount_cents: int
    method: str


@strawberry.type
class Claim:
    claim_id: str
    claimed_cents: int
    settled_cents: int | None
    resolution: str | None


@strawberry.type
class Entry:
    key: str
    value: str


@strawberry.type(description="Who should take the order over after its van stopped (a proposal).")
class RedispatchSuggestion:
    to_driver_id: str | None
    to_vehicle_id: str | None
    distance_m: float | None
    eta: str | None
    decided_at: str
    reason: str
    excluded: list[Entry]


@strawberry.type
class TrackPoint:
    at: str
    lat: float
    lng: float
    speed_kmh: float | None
    heading_deg: float | None


@strawberry.type(description="The order's driver's GPS points from the dispatch to the delivery (or now), evenly "
                             "thinned to the limit.")
class Track:
    order_id: str
    driver_id: str | None
    from_: str | None = strawberry.field(name="from")
    to: str | None
    total: int
    thinned: bool
    points: list[TrackPoint]


def entries(m: Mapping[str, str] | None) -> list[Entry]:
    return [Entry(key=k, value=v) for k, v in sorted((m or {}).items())]


def from_view(cls: Any, m: Mapping[str, Any] | None) -> Any:
    """``cls`` from a camelCase mapping of the order view (each field from its camelCase key)."""
    if m is None:
        return None
    return cls(**{n: m.get(camel(n)) for n in cls.__annotations__})


def camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(w.title() for w in rest)


def driver_info(info: Mapping[str, Any] | None) -> DriverInfo | None:
    if info is None:
        return None
    return DriverInfo(driver_id=info["driverId"], name=info["name"], phone=info["phone"], vehicle_id=info["vehicleId"],
                      vehicle_plate=info["vehiclePlate"], location=from_view(Location, info.get("location")))


def position(p: Mapping[str, Any] | None) -> DriverPosition | None:
    if p is None:
        return None
    return DriverPosition(at=iso(p["at"]) or "", lat=p["lat"], lng=p["lng"], speed_kmh=p["speed_kmh"],
                          heading_deg=p["heading_deg"], vehicle_id=p["vehicle_id"])


def load(d: Mapping[str, Any] | None) -> DriverLoad | None:
    if d is None:
        return None
    return DriverLoad(at=iso(d["at"]) or "", vehicle_id=d["vehicle_id"], load_kg=d["load_kg"],
                      orders_on_board=d["orders_on_board"], order_ids=list(d["order_ids"]),
                      stop_order=list(d.get("stop_order") or ()))


def track(t: Mapping[str, Any]) -> Track:
    return Track(order_id=t["orderId"], driver_id=t["driverId"], from_=t["from"], to=t["to"], total=t["total"],
                 thinned=t["thinned"], points=[from_view(TrackPoint, p) for p in t["points"]])


def lines(doc: Mapping[str, Any]) -> list[OrderLine]:
    return [from_view(OrderLine, ln) for ln in doc["items"]]


def stages(doc: Mapping[str, Any]) -> list[Stage]:
    return [Stage(name=k, at=v) for k, v in sorted(doc["stages"].items(), key=lambda kv: (kv[1], kv[0]))]


def redispatch(s: Mapping[str, Any] | None) -> RedispatchSuggestion | None:
    if s is None:
        return None
    return RedispatchSuggestion(to_driver_id=s["toDriverId"], to_vehicle_id=s["toVehicleId"],
                                distance_m=s["distanceM"], eta=s["eta"], decided_at=s["decidedAt"],
                                reason=s["reason"], excluded=entries(s["excluded"]))
