"""The Order aggregate: ids, time, recorded decisions, and the shared rules."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from commands.avro_mapping import ENVELOPE_FIELDS
from commands.errors import CommandRejected, InvalidCommand
from commands.order_aggregate import COMMANDS, ENVELOPE, EVENT_CLASSES, RECORD_TYPES, Order, order_uuid
from commands.order_service import OrderService
from projections.order_events import InvalidEvent
from projections.order_status import IllegalTransition
from schemas.catalog import CommittedCatalog
from simulator.events import T0
from tests.unit.commands.order_commands_kit import command_for


def _created(order_id: str = "KL1", at: int | datetime = T0) -> Order:
    _, kwargs = command_for("create", order_id, T0)
    kwargs["at"] = at
    return Order.create(order_id, **kwargs)


def test_aggregate_id_is_uuid5_of_the_order_id_and_the_order_id_is_stored() -> None:
    order = _created("KL1")
    assert order.id == order_uuid("KL1") == _created("KL1").id
    assert order.id.version == 5
    assert order.id != order_uuid("KL2")
    assert order.order_id == "KL1"
    assert order.version == 1


def test_event_time_is_the_callers_at_never_the_clock() -> None:
    order = _created(at=T0)
    assert order.created_on == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    _, kwargs = command_for("confirm_payment", "KL1", T0)
    kwargs["at"] = datetime(2026, 6, 1, 14, 5, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    order.confirm_payment(**kwargs)
    # truncated to the millisecond, exactly as the Avro timestamp-millis will carry it
    assert order.modified_on == datetime(2026, 6, 1, 6, 5, 0, 123000, tzinfo=UTC)
    assert order.stages["paid"] == T0 + 5 * 60_000 + 123


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        _created(at=datetime(2026, 6, 1, 6, 0))


def test_every_event_carries_the_decided_status_order_id_and_producer() -> None:
    order = _created()
    _, kwargs = command_for("confirm_payment", "KL1", T0 + 1)
    order.confirm_payment(**kwargs)
    created, paid = order.collect_events()
    assert (created.status, paid.status) == ("CREATED", "PAID")
    assert created.order_id == paid.order_id == "KL1"
    assert paid.producer == "payment-gateway"
    assert created.total_cents == 5 * 1200 + 3 * 3800 + 12 * 1350


def test_one_event_class_per_avro_order_event_with_exactly_its_payload_fields() -> None:
    catalog = CommittedCatalog.load()
    assert set(RECORD_TYPES.values()) == set(COMMANDS.values()) == set(EVENT_CLASSES)
    for record_type, cls in EVENT_CLASSES.items():
        assert cls.__qualname__.startswith("Order."), cls
        avro_fields = {f["name"] for f in catalog.latest(record_type).raw["fields"]} - set(ENVELOPE_FIELDS)
        event_fields = {f.name for f in dataclasses.fields(cls)} - ENVELOPE
        assert event_fields == avro_fields, record_type


def test_refused_command_records_nothing_and_names_the_command() -> None:
    order = _created()
    _, kwargs = command_for("deliver", "KL1", T0)
    with pytest.raises(CommandRejected) as info:
        order.deliver(**kwargs)
    assert str(info.value) == ("command deliver: order KL1: OrderDelivered is not allowed in state CREATED: "
                               "allowed only from DELIVERING")
    assert isinstance(info.value, IllegalTransition)
    assert info.value.status is not None and info.value.status.value == "CREATED"
    assert info.value.event_type == "OrderDelivered"
    assert order.version == 1 and len(order.pending_events) == 1


def test_impossible_data_is_an_invalid_command() -> None:
    _, kwargs = command_for("create", "KL1", T0)
    kwargs["lines"] = [{**kwargs["lines"][0], "quantity": -1.0}]
    with pytest.raises(InvalidCommand, match=r"command create: order KL1: line 1 quantity -1.0 must be > 0") as info:
        Order.create("KL1", **kwargs)
    assert isinstance(info.value, InvalidEvent)


def test_malformed_payload_is_an_invalid_command_not_a_key_error() -> None:
    order = _created()
    _, kwargs = command_for("confirm_payment", "KL1", T0)
    order.confirm_payment(**kwargs)
    with pytest.raises(InvalidCommand, match="malformed StockChecked data: KeyError"):
        order.check_stock(at=T0, warehouse_id="WH", lines=[{"line_no": 1}])


def test_reloaded_aggregate_equals_the_one_that_recorded_the_events() -> None:
    service = OrderService.from_url("memory://")
    for step in ("create", "confirm_payment", "check_stock_partial", "start_picking", "weigh_line", "pack",
                 "dispatch"):
        command, kwargs = command_for(step, "KL1", T0)
        live = service.execute(command, "KL1", **kwargs)
    reloaded = service.find("KL1")
    assert reloaded is not None
    assert reloaded.version == live.version == 7
    assert reloaded.status == live.status
    assert reloaded.view == live.view
    assert reloaded.view is not None and reloaded.view["driver"]["driver_id"] == "DRV-001"


def test_order_uuid_is_stable_across_releases() -> None:
    # Changing the namespace would orphan every stored order: pin one value.
    assert order_uuid("KL1") == uuid.uuid5(uuid.UUID("0f6c5b8e-5d0a-5c43-9c0e-6b75a1f0e001"), "KL1")
