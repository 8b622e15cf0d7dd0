"""Recorded events -> Avro records: schema-exact, and folded by the stream side without a rejection."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.avro_mapping import MappingError, encode_checked, event_id, to_avro, to_command
from commands.errors import CommandError, InvalidCommand
from commands.order_service import OrderService
from privacy.fields import reveal_record
from projections.order_state import fold_all
from projections.timefmt import jsonable
from schemas.codec import AvroCodec
from schemas.errors import EncodeFailed
from simulator.events import T0, order_story
from tests.unit.commands.order_commands_kit import ENDINGS, PATHS, PAYLOADS, command_for, drive, status_of

CODEC = AvroCodec()
# Paths beyond the state table's (same states, other payloads).
EXTRA_PATHS = {"PICKING+no_shortage": ["create", "confirm_payment", "check_stock", "start_picking"]}
ALL_PATHS = {**PATHS, **EXTRA_PATHS}


def _recorded(service: OrderService) -> list[tuple[str, dict[str, Any]]]:
    notifications = service.recorder.select_notifications(start=None, limit=100_000)
    return [to_avro(service.mapper.to_domain_event(n)) for n in notifications]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def every_path() -> tuple[OrderService, list[tuple[str, dict[str, Any]]]]:
    service = OrderService.from_url("memory://")
    for situation, steps in ALL_PATHS.items():
        drive(service, f"M:{situation}", steps)
    return service, _recorded(service)


def test_every_command_payload_is_used_by_some_path() -> None:
    used = {step for steps in ALL_PATHS.values() for step in steps}
    assert used == set(PAYLOADS)


def test_every_recorded_event_encodes_and_decodes_to_the_same_record(every_path: Any) -> None:
    _, records = every_path
    assert {rt for rt, _ in records} == {
        "OrderCreated", "PaymentConfirmed", "StockChecked", "PickingStarted", "LineWeighed", "OrderPacked",
        "OrderDispatched", "ExceptionReported", "OrderDelivered", "DeliveryRefused", "ReturnStarted",
        "ReturnCompleted", "DamageClaimOpened", "DamageClaimSettled", "OrderCancelled"}
    for record_type, record in records:
        data = CODEC.encode(record_type, record)
        assert encode_checked(CODEC, record_type, record) == data
        decoded = CODEC.decode(data)
        assert decoded.record_type == record_type
        assert jsonable(decoded.value) == record


def test_folding_the_mapped_events_reaches_every_state_without_a_rejection(every_path: Any) -> None:
    service, records = every_path
    states, rejections = fold_all(records)
    assert rejections == []
    for situation in ALL_PATHS:
        if situation == "NEW":
            assert f"M:{situation}" not in states
            continue
        state = states[f"M:{situation}"]
        assert state["view"]["status"] == status_of(situation), situation
        # the command side's state IS the projection: same apply_event, same rules
        assert state["view"] == service.view(f"M:{situation}"), situation


def test_duplicated_and_shuffled_delivery_folds_to_the_same_states(every_path: Any) -> None:
    _, records = every_path
    messy = records + random.Random(7).sample(records, len(records) // 2)
    random.Random(11).shuffle(messy)
    clean_states, _ = fold_all(records)
    messy_states, rejections = fold_all(messy)
    assert rejections == []
    assert {k: v["view"] for k, v in messy_states.items()} == {k: v["view"] for k, v in clean_states.items()}


def test_envelope_event_id_is_unique_and_stable(every_path: Any) -> None:
    service, records = every_path
    ids = [record["event_id"] for _, record in records]
    assert len(set(ids)) == len(ids)
    assert _recorded(service) == records  # mapping again (a re-send) gives the same ids
    first = records[0][1]
    assert first["version"] == 1
    assert first["event_id"] == str(uuid.uuid5(uuid.UUID("0f6c5b8e-5d0a-5c43-9c0e-6b75a1f0e002"),
                                               f"{service.find(first['order_id']).id}:1"))  # type: ignore[union-attr]
    assert event_id(uuid.UUID(int=1), 2) != event_id(uuid.UUID(int=1), 3)


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_simulator_stories_round_trip_through_the_command_side(ending: str) -> None:
    service = OrderService.from_url("memory://")
    story = order_story("KL-RT", T0, ending=ending)
    for record_type, record in story:
        command, order_id, kwargs = to_command(record_type, record)
        service.execute(command, order_id, **kwargs)
    recorded = _recorded(service)
    assert [rt for rt, _ in recorded] == [rt for rt, _ in story]
    for (record_type, mine), (_, theirs) in zip(recorded, story, strict=True):
        opened = reveal_record(record_type, mine, service.keys)  # recorded sealed, the same values inside
        assert {k: v for k, v in opened.items() if k != "event_id"} == {k: v for k, v in theirs.items()
                                                                       if k != "event_id"}
    assert service.find("KL-RT").status.value == ENDINGS[ending]  # type: ignore[union-attr]


def test_encode_checked_refuses_what_avro_would_not_carry_faithfully() -> None:
    _, record = to_avro(_first_event())
    with pytest.raises(EncodeFailed, match="OrderCreated"):
        encode_checked(CODEC, "OrderCreated", {**record, "total_cents": 1.5})
    with pytest.raises(EncodeFailed):
        encode_checked(CODEC, "OrderCreated", {**record, "lines": [{**record["lines"][0], "unit": "BOX"}]})
    with pytest.raises(EncodeFailed, match=r"OrderCreated.*colour"):
        encode_checked(CODEC, "OrderCreated", {**record, "colour": "green"})
    with pytest.raises(EncodeFailed, match=r"OrderCreated.*(lines|note)"):
        encode_checked(CODEC, "OrderCreated", {**record, "lines": [{**record["lines"][0], "note": "x"}]})


def test_a_command_whose_event_could_not_be_published_is_refused_and_not_stored() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL-X", ["create"])
    _, kwargs = command_for("confirm_payment", "KL-X", T0)
    with pytest.raises(InvalidCommand, match=r"(?s)^command confirm_payment: order KL-X: .*method is <WECHAT>"):
        service.confirm_payment("KL-X", **{**kwargs, "method": "WECHAT"})
    assert service.find("KL-X").version == 1  # type: ignore[union-attr]
    _, kwargs = command_for("create", "KL-Y", T0)
    with pytest.raises(InvalidCommand, match=r"command create: order KL-Y: .*OrderCreated.*(lines|note)"):
        service.create("KL-Y", **{**kwargs, "lines": [{**kwargs["lines"][0], "note": "dropped by Avro"}]})
    assert service.find("KL-Y") is None


def test_non_order_events_are_refused() -> None:
    with pytest.raises(MappingError):
        to_avro(object())  # type: ignore[arg-type]
    with pytest.raises(MappingError):
        to_command("GpsPing", {})


def _first_event() -> Any:
    service = OrderService.from_url("memory://")
    drive(service, "KL-F", ["create"])
    return service.mapper.to_domain_event(service.recorder.select_notifications(start=None, limit=1)[0])


# --- property: whatever commands arrive, the command side and the fold agree ------------------------

STEPS = sorted(PAYLOADS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=25))
def test_any_command_sequence_agrees_with_the_fold(steps: list[str]) -> None:
    service = OrderService.from_url("memory://")
    at = T0
    accepted = 0
    for step in steps:
        command, kwargs = command_for(step, "KL-H", at)
        at += 60_000
        try:
            service.execute(command, "KL-H", **kwargs)
            accepted += 1
        except CommandError:
            pass
    records = _recorded(service)
    assert len(records) == accepted
    states, rejections = fold_all(records)
    assert rejections == []
    assert (states["KL-H"]["view"] if states else None) == service.view("KL-H")
