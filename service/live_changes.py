"""What the WebSocket feed sends and to whom: changes, interests, resume cursors. Pure (no I/O).

A *change* is one record of the order-state, alert or order-ETA topic, with the owners it
concerns (order, customer, driver, warehouse) so a subscription can be matched without a
lookup. A *cursor* is the feed's position after a change: the next offset of every partition
of those topics. A client that reconnects with the last cursor it received gets every change
it would have seen after it, then the live feed, with nothing missed and nothing twice.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

INTEREST_KINDS = ("order", "customer", "driver", "warehouse", "alerts", "fleet")
KEYLESS_KINDS = ("alerts", "fleet")  # every alert; every van's position (operators, customer service)
CURSOR_VERSION = 1


class BadSubscription(ValueError):
    """A subscribe message the feed cannot serve (the text says which part)."""


@dataclass(frozen=True, slots=True)
class Interest:
    """What a client asked for: one order, a customer's (merchant's) orders, a driver's, a warehouse's,
    every alert (customer service), or every van's position (the operations map)."""

    kind: str
    key: str | None = None

    def index_key(self) -> tuple[str, str | None]:
        return (self.kind, self.key)


@dataclass(slots=True)
class Change:
    kind: str  # "order" (order-state projection), "alert", "eta" (tracking record)
    topic: str
    partition: int
    offset: int
    order_id: str | None
    customer_id: str | None
    driver_id: str | None
    warehouse_id: str | None
    data: dict[str, Any]
    cursor: str = ""
    _frames: dict[bool, str] = field(default_factory=dict)

    def index_keys(self) -> Iterable[tuple[str, str | None]]:
        """The interests this change can match (looked up in the hub's index)."""
        if self.order_id:
            yield ("order", self.order_id)
        if self.customer_id:
            yield ("customer", self.customer_id)
        if self.driver_id:
            yield ("driver", self.driver_id)
        if self.warehouse_id:
            yield ("warehouse", self.warehouse_id)
        if self.kind == "alert":
            yield ("alerts", None)

    def frame(self, redact: Any = None) -> str:
        """The JSON text frame, encoded once per change (and once more for a redacted audience)."""
        key = redact is not None
        if key not in self._frames:
            data = redact(self.data) if redact is not None and self.kind == "order" else self.data
            self._frames[key] = orjson.dumps({"type": "change", "kind": self.kind, "orderId": self.order_id,
                                              "data": data, "cursor": self.cursor}).decode()
        return self._frames[key]


def matches(interests: Iterable[Interest], change: Change) -> bool:
    keys = set(change.index_keys())
    return any(i.index_key() in keys for i in interests)


def parse_subscribe(message: Mapping[str, Any]) -> tuple[list[Interest], str | None]:
    """``{"subscribe": [{"order": "O1"}, {"alerts": true}], "resume": "<cursor>"}`` -> interests, cursor."""
    wanted = message.get("subscribe")
    if isinstance(wanted, Mapping):
        wanted = [wanted]
    if not isinstance(wanted, list) or not wanted:
        raise BadSubscription('send {"subscribe": [{"order": ID} | {"customer": ID} | {"driver": ID} | '
                              '{"warehouse": ID} | {"alerts": true} | {"fleet": true}], "resume": CURSOR?}')
    interests = []
    for item in wanted:
        if not isinstance(item, Mapping) or len(item) != 1:
            raise BadSubscription(f"each interest is one of {INTEREST_KINDS} with its id: {item!r}")
        (kind, key), = item.items()
        if kind not in INTEREST_KINDS:
            raise BadSubscription(f"unknown interest {kind!r}: one of {INTEREST_KINDS}")
        if kind in KEYLESS_KINDS:
            interests.append(Interest(kind))
        elif not isinstance(key, str) or not key:
            raise BadSubscription(f"interest {kind!r} needs an id string")
        else:
            interests.append(Interest(kind, key))
    resume = message.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise BadSubscription("resume is the cursor string of the last message received")
    return interests, resume


def encode_cursor(topics: Mapping[str, list[int]]) -> str:
    """Next offset per partition of each topic -> an opaque, URL-safe string."""
    raw = orjson.dumps({"v": CURSOR_VERSION, "p": topics})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, list[int]]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = orjson.loads(raw)
        if body.get("v") != CURSOR_VERSION:
            raise ValueError(f"cursor version {body.get('v')}, this service reads {CURSOR_VERSION}")
        positions = body["p"]
        if not all(isinstance(t, str) and all(isinstance(o, int) and o >= 0 for o in offs)
                   for t, offs in positions.items()):
            raise ValueError("offsets must be non-negative integers")
        return {t: list(offs) for t, offs in positions.items()}
    except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise BadSubscription(f"resume cursor not readable: {exc}") from exc


def catch_up_ranges(resume: Mapping[str, list[int]], live_from: Mapping[str, list[int]]
                    ) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> [from, to) offsets a resuming client missed: from its cursor to where its live
    feed starts. A topic or partition the cursor does not name starts at the live position (nothing to
    replay: the client never saw it)."""
    out = {}
    for topic, ends in live_from.items():
        starts = resume.get(topic, [])
        for p, end in enumerate(ends):
            start = starts[p] if p < len(starts) else end
            if start < end:
                out[(topic, p)] = (start, end)
    return out


class Positions:
    """Van positions between two sends: the newest GPS fix per driver (newest event time wins, so a late or
    duplicate ping never moves a van back). ``drain`` hands over what moved since the last drain. Positions
    are ephemeral: they are not part of the cursor (a reconnecting client reads the fleet over REST)."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}
        self._sent_at: dict[str, int] = {}

    def offer(self, ping: Mapping[str, Any]) -> None:
        driver, at = ping["driver_id"], ping["at_ms"]
        if at <= self._sent_at.get(driver, -1):
            return
        current = self._latest.get(driver)
        if current is None or at > current["atMs"]:
            self._latest[driver] = {"driverId": driver, "vehicleId": ping["vehicle_id"], "lat": ping["lat"],
                                    "lng": ping["lng"], "atMs": at, "speedKmh": round(float(ping["speed_kmh"]), 1)}

    def drain(self) -> dict[str, dict[str, Any]]:
        moved, self._latest = self._latest, {}
        for driver, p in moved.items():
            self._sent_at[driver] = p["atMs"]
        return moved


def positions_frame(positions: Iterable[Mapping[str, Any]]) -> str:
    return orjson.dumps({"type": "positions", "positions": list(positions)}).decode()
