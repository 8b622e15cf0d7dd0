"""What the order store and the driver-position store promise, as assertions
run against the fakes AND the real Redis adapters.

``tests/unit/streams/test_fake_stores.py`` runs every contract on
``FakeOrderStore``/``FakeDriverPositions``; ``tests/integration/test_redis_store_contract.py``
runs the very same functions on ``RedisOrderStore``/``RedisDriverPositions``
against the test stack's Redis. A fake that passes here behaves like the real
thing as far as the projectors can tell.

A harness gives ``orders`` (load/save/view/order_ids) and ``positions``
(save/get), both empty at the start.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.order_state import State, fold_all
from projections.order_view import public_view
from schemas.codec import AvroCodec
from simulator.events import T0, WAREHOUSE, Event, order_story
from streams.sinks.redis_orders import OrderWrite


@dataclass
class StoreHarness:
    orders: Any  # RedisOrderStore-like
    positions: Any  # RedisDriverPositions-like


Contract = Callable[[StoreHarness], None]


def state_of(events: list[Event]) -> State:
    states, rejections = fold_all(events)
    assert rejections == [], rejections
    (state,) = states.values()
    return state


CODEC = AvroCodec(epoch_ms=True)


def write_of(state: State) -> OrderWrite:
    view = state["view"]
    return OrderWrite(state["order_id"], state, CODEC.encode("OrderState", view) if view is not None else None)


def prefixes(events: list[Event]) -> list[State]:
    """The fold state after each event of a legal story."""
    return [state_of(events[:n]) for n in range(1, len(events) + 1)]


def ping(driver: str, at: int | datetime, *, seq: int = 0, lat: float = 39.93, lng: float = 116.45,
         **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gps:{driver}:{at}:{seq}")), "driver_id": driver,
            "vehicle_id": f"VAN-{driver[-3:]}", "event_time": at, "producer": "driver-app/test", "lat": lat,
            "lng": lng, "speed_kmh": 31.5, "heading_deg": 90.0, "accuracy_m": 5.0, **over}


def position_of(p: dict[str, Any], at: int) -> dict[str, Any]:
    return {"driver_id": p["driver_id"], "vehicle_id": p["vehicle_id"], "event_id": p["event_id"], "at": at,
            "lat": p["lat"], "lng": p["lng"], "speed_kmh": p["speed_kmh"], "heading_deg": p["heading_deg"]}


# --- order store -------------------------------------------------------------------------------


def contract_save_load_round_trip(h: StoreHarness) -> None:
    assert h.orders.load([]) == {}
    assert h.orders.load(["O-NONE"]) == {}
    assert h.orders.view("O-NONE") is None
    state = state_of(order_story("O-RT-1"))
    other = state_of(order_story("O-RT-2", ending="cancelled"))
    assert h.orders.save([write_of(state), write_of(other)]) == []
    assert h.orders.load(["O-RT-1", "O-NONE", "O-RT-2"]) == {"O-RT-1": state, "O-RT-2": other}
    assert h.orders.view("O-RT-1") == public_view(state["view"])
    assert h.orders.order_ids(status="SIGNED") == {"O-RT-1"}
    assert h.orders.order_ids(status="CANCELLED") == {"O-RT-2"}
    assert h.orders.order_ids(customer="CUST-0001") == {"O-RT-1", "O-RT-2"}
    assert h.orders.order_ids(driver="DRV-001") == {"O-RT-1"}
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == {"O-RT-1", "O-RT-2"}
    assert h.orders.save([]) == []


def contract_older_state_never_overwrites_newer(h: StoreHarness) -> None:
    oid = "O-OLD"
    story = order_story(oid)
    steps = prefixes(story)
    newest, older = steps[-1], steps[3]  # SIGNED vs PICKING
    assert h.orders.save([write_of(newest)]) == []
    # a worker that lost the partition writes a stale state, alone and inside a batch: refused, and said so
    assert h.orders.save([write_of(older)]) == [oid]
    assert h.orders.save([write_of(steps[0]), write_of(steps[5])]) == [oid, oid]
    assert h.orders.load([oid]) == {oid: newest}
    assert (h.orders.view(oid))["status"] == "SIGNED"
    assert h.orders.order_ids(status="SIGNED") == {oid}
    assert h.orders.order_ids(status="PICKING") == set()
    assert h.orders.order_ids(status="CREATED") == set()

    # inside one batch the later of two writes is judged against the earlier one
    oid2 = "O-OLD-2"
    steps2 = prefixes(order_story(oid2))
    h.orders.save([write_of(steps2[2]), write_of(steps2[1])])
    assert h.orders.load([oid2]) == {oid2: steps2[2]}

    # same applied version: the state holding more buffered events wins; an equal one replaces
    oid3 = "O-PEND"
    story3 = order_story(oid3)
    plain = state_of(story3[:3])
    held = state_of([*story3[:3], story3[4]])  # v5 buffered, waiting for v4
    assert (plain["applied"], held["applied"], len(held["pending"])) == (3, 3, 1)
    h.orders.save([write_of(held)])
    h.orders.save([write_of(plain)])
    assert h.orders.load([oid3]) == {oid3: held}
    h.orders.save([write_of(held)])  # a re-delivered batch writes the same state again
    assert h.orders.load([oid3]) == {oid3: held}
    caught_up = state_of(story3[:5])  # v4 arrived: applied 5, nothing pending
    h.orders.save([write_of(caught_up)])
    assert h.orders.load([oid3]) == {oid3: caught_up}
    assert h.orders.order_ids(status="PICKING") == {oid3}


def contract_status_index_moves_on_status_change(h: StoreHarness) -> None:
    a, b = "O-ST-A", "O-ST-B"
    for state in prefixes(order_story(b, ending="out_of_stock"))[:2]:
        h.orders.save([write_of(state)])
    assert h.orders.order_ids(status="PAID") == {b}
    seen: set[str] = set()
    for state in prefixes(order_story(a)):
        h.orders.save([write_of(state)])
        status = state["view"]["status"]
        seen.add(status)
        assert h.orders.order_ids(status=status) == ({a, b} if status == "PAID" else {a}), status
        for old in seen - {status}:
            assert a not in h.orders.order_ids(status=old), (status, old)
    assert h.orders.order_ids(status="PAID") == {b}
    assert h.orders.order_ids(status="SIGNED") == {a}
    assert seen == {"CREATED", "PAID", "PICKING", "DELIVERING", "SIGNED"}
    h.orders.save([write_of(state_of(order_story(b, ending="out_of_stock")))])
    assert h.orders.order_ids(status="PAID") == set()
    assert h.orders.order_ids(status="OUT_OF_STOCK") == {b}
    assert h.orders.order_ids(customer="CUST-0001") == {a, b}


def contract_driver_index_moves_on_redispatch(h: StoreHarness) -> None:
    oid = "O-RD"
    story = order_story(oid, ending="redispatched")
    types = [t for t, _ in story]
    first, exc, second = types.index("OrderDispatched"), types.index("ExceptionReported"), len(types) - 2
    assert types[second] == "OrderDispatched"
    steps = prefixes(story)

    def drivers() -> tuple[set[str], set[str]]:
        return h.orders.order_ids(driver="DRV-001"), h.orders.order_ids(driver="DRV-002")

    h.orders.save([write_of(steps[first - 1])])  # packed, not dispatched
    assert drivers() == (set(), set())
    h.orders.save([write_of(steps[first])])
    assert drivers() == ({oid}, set())
    h.orders.save([write_of(steps[exc])])
    assert drivers() == ({oid}, set())
    assert h.orders.order_ids(status="EXCEPTION_HANDLING") == {oid}
    h.orders.save([write_of(steps[second])])
    assert drivers() == (set(), {oid})
    h.orders.save([write_of(steps[-1])])
    assert drivers() == (set(), {oid})
    assert (h.orders.view(oid))["driverInfo"]["driverId"] == "DRV-002"


def contract_view_absent_while_only_pending(h: StoreHarness) -> None:
    oid = "O-PENDING"
    story = order_story(oid)
    only_pending = state_of(story[1:2])  # PaymentConfirmed v2 before OrderCreated v1
    assert only_pending["view"] is None and list(only_pending["pending"]) == ["2"]
    write = write_of(only_pending)
    assert write.projection is None
    assert h.orders.save([write]) == []
    assert h.orders.load([oid]) == {oid: only_pending}
    assert h.orders.view(oid) is None
    assert h.orders.order_ids(customer="CUST-0001") == set()
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == set()
    assert h.orders.order_ids(status="PAID") == set()
    assert h.orders.order_ids(status="CREATED") == set()
    closed = state_of([story[1], story[0]])  # v1 arrives, drains v2
    h.orders.save([write_of(closed)])
    assert (h.orders.view(oid))["status"] == "PAID"
    assert h.orders.order_ids(status="PAID") == {oid}
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == {oid}


def contract_warehouse_index_holds_each_order_once_through_its_life(h: StoreHarness) -> None:
    a, b = "O-WH-A", "O-WH-B"
    other = [(t, {**e, "warehouse_id": "WH-OTHER"} if t == "OrderCreated" else e)
             for t, e in order_story(b, ending="redispatched")]
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == set()
    for state in prefixes(order_story(a)):
        h.orders.save([write_of(state)])
        assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == {a}, state["view"]["status"]
    for state in prefixes(other):  # re-dispatched to another driver: the warehouse stays
        h.orders.save([write_of(state)])
    assert h.orders.order_ids(warehouse="WH-OTHER") == {b}
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == {a}
    h.orders.save([write_of(prefixes(order_story(a))[2])])  # a stale write is refused: nothing moves
    assert h.orders.order_ids(warehouse=WAREHOUSE["id"]) == {a}


# --- driver positions ----------------------------------------------------------------------------


def contract_positions_newest_wins(h: StoreHarness) -> None:
    assert h.positions.get("DRV-NONE") is None
    p1 = ping("DRV-001", T0, lat=39.90)
    p2 = ping("DRV-001", datetime.fromtimestamp((T0 + 10_000) / 1000, tz=UTC), lat=39.91)  # decoded Avro form
    late = ping("DRV-001", T0 + 5_000, lat=39.95)
    tie = ping("DRV-001", T0 + 10_000, seq=1, lat=39.99)  # same instant, other event: the stored one stays
    q = ping("DRV-002", T0 + 1_000, lat=39.80)
    assert h.positions.save([p1]) == 1
    assert h.positions.get("DRV-001") == position_of(p1, T0)
    assert h.positions.save([p2, q, p2]) == 2  # a duplicate in the same batch is not stored twice
    assert h.positions.save([p2]) == 0  # nor in a later one
    assert h.positions.save([late, tie]) == 0
    h.positions.save([ping("DRV-002", T0 + 3_000, lat=39.81), ping("DRV-002", T0 + 2_000, lat=39.82)])
    assert h.positions.get("DRV-001") == position_of(p2, T0 + 10_000)
    got = h.positions.get("DRV-002")
    assert (got["at"], got["lat"]) == (T0 + 3_000, 39.81)
    assert h.positions.save([]) == 0


def contract_polar_latitude_is_stored(h: StoreHarness) -> None:
    north = ping("DRV-POLE", T0, lat=89.9, lng=10.0)
    assert h.positions.save([north]) == 1
    assert h.positions.get("DRV-POLE") == position_of(north, T0)
    south = ping("DRV-POLE", T0 + 1_000, lat=-89.9, lng=-170.0)
    h.positions.save([south, ping("DRV-EQ", T0, lat=0.5, lng=179.9)])
    assert (h.positions.get("DRV-POLE"))["lat"] == -89.9
    assert (h.positions.get("DRV-EQ"))["lng"] == 179.9


CONTRACTS: list[Contract] = [
    contract_save_load_round_trip,
    contract_older_state_never_overwrites_newer,
    contract_status_index_moves_on_status_change,
    contract_driver_index_moves_on_redispatch,
    contract_view_absent_while_only_pending,
    contract_warehouse_index_holds_each_order_once_through_its_life,
    contract_positions_newest_wins,
    contract_polar_latitude_is_stored,
]
