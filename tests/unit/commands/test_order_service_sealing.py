"""The write path seals: the event store file holds no personal plain text, the relay's records carry
ciphertext under the right subjects, and the fold of those records holds the same sealed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from commands.avro_mapping import encode_checked, to_avro, to_command
from commands.errors import InvalidCommand
from commands.order_service import OrderService
from privacy.fields import reveal_record
from privacy.keystore import CachedKeyStore, SqliteKeyStore
from privacy.sealed import is_sealed
from projections.order_state import fold_all
from schemas.codec import AvroCodec
from simulator.events import T0, order_story
from tests.unit.privacy.sealed_logs import has_plaintext

MASTER = bytes(range(7, 39))
CODEC = AvroCodec(epoch_ms=True)
PLAIN = ("王经理", "13812345678", "北京市东城区东长安街1号", "张三", "13800001234", "李厨师")


class PlainOrderService(OrderService):
    """The command side without sealing: the control that shows the grep below would find plain text."""

    def _sealed(self, command: str, order_id: str, view: Any, fields: dict[str, Any]) -> dict[str, Any]:
        return fields


def drive(service: OrderService, *stories: tuple[str, str]) -> None:
    for i, (order_id, ending) in enumerate(stories):
        for record_type, record in order_story(order_id, T0 + i * 60_000, ending=ending):
            command, oid, kwargs = to_command(record_type, record)
            service.execute(command, oid, **kwargs)


def recorded(service: OrderService) -> list[tuple[str, dict[str, Any]]]:
    """What the relay publishes: every stored event as its Avro record, through the wire format."""
    out = []
    for n in service.recorder.select_notifications(start=None, limit=10_000):
        record_type, record = to_avro(service.mapper.to_domain_event(n))  # type: ignore[arg-type]
        out.append((record_type, CODEC.decode(encode_checked(CODEC, record_type, record)).value))
    return out


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def plain_text_in(data: bytes) -> list[str]:
    """Which of PLAIN occur in ``data``, as UTF-8 or as JSON \\u escapes."""
    return [t for t in PLAIN if t.encode() in data or json.dumps(t).strip('"').encode() in data]


STORIES = (("KL-SEAL-1", "signed"), ("KL-SEAL-2", "redispatched"), ("KL-SEAL-3", "refused"))


def test_the_event_store_file_holds_no_personal_plain_text(tmp_path: Path) -> None:
    control = PlainOrderService.from_url(f"sqlite:///{tmp_path}/plain.sqlite", keys=SqliteKeyStore(None, MASTER))
    drive(control, *STORIES)
    control.close()
    assert sorted(plain_text_in(store_bytes(tmp_path / "plain.sqlite"))) == sorted(PLAIN)  # the grep works

    keys = SqliteKeyStore(tmp_path / "keys.sqlite", MASTER)
    service = OrderService.from_url(f"sqlite:///{tmp_path}/orders.sqlite", keys=keys)
    drive(service, *STORIES)
    records = recorded(service)
    service.close()
    assert plain_text_in(store_bytes(tmp_path / "orders.sqlite")) == []
    assert plain_text_in(store_bytes(tmp_path / "keys.sqlite")) == []
    assert not has_plaintext(records, PLAIN)


def test_each_event_is_sealed_under_its_subject_and_opens_to_what_was_commanded() -> None:
    keys = SqliteKeyStore(None, MASTER)
    service = OrderService.from_url("memory://", keys=keys)
    drive(service, ("KL-SEAL-2", "redispatched"))
    records = recorded(service)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record_type, record in records:
        by_type.setdefault(record_type, []).append(record)
    [created] = by_type["OrderCreated"]
    assert {created[f]["key_id"] for f in ("customer_name", "customer_phone")} == {"customer:CUST-0001"}
    assert created["delivery_address"]["text"]["key_id"] == "customer:CUST-0001"
    assert [d["driver_name"]["key_id"] for d in by_type["OrderDispatched"]] == ["driver:DRV-001", "driver:DRV-002"]
    assert by_type["OrderDelivered"][0]["receiver_name"]["key_id"] == "customer:CUST-0001"  # the order's customer
    story = order_story("KL-SEAL-2", T0, ending="redispatched")
    for (record_type, mine), (_, theirs) in zip(records, story, strict=True):
        opened = reveal_record(record_type, mine, keys)
        assert {k: v for k, v in opened.items() if k != "event_id"} == {k: v for k, v in theirs.items()
                                                                       if k != "event_id"}


def test_the_fold_of_the_published_records_holds_the_aggregates_sealed_values() -> None:
    keys = SqliteKeyStore(None, MASTER)
    service = OrderService.from_url("memory://", keys=keys)
    drive(service, *STORIES)
    states, rejections = fold_all(recorded(service))
    assert rejections == []
    plain, _ = fold_all([e for i, (oid, ending) in enumerate(STORIES)
                         for e in order_story(oid, T0 + i * 60_000, ending=ending)])
    for order_id, _ in STORIES:
        view = states[order_id]["view"]
        assert view == service.view(order_id)  # the aggregate's own view: the same sealed values
        assert is_sealed(view["driver"]["name"]) and is_sealed(view["driver"]["phone"])
        assert not has_plaintext(states[order_id], PLAIN)
        assert reveal_record("OrderState", view, keys) == plain[order_id]["view"]
    assert is_sealed(states["KL-SEAL-1"]["view"]["signature"]["receiver_name"])


def test_an_already_sealed_value_is_recorded_as_it_is() -> None:
    keys = SqliteKeyStore(None, MASTER)
    first = OrderService.from_url("memory://", keys=keys)
    drive(first, ("KL-SEAL-1", "signed"))
    again = OrderService.from_url("memory://", keys=keys)
    for record_type, record in recorded(first):  # re-driving published records (e.g. a migration)
        command, oid, kwargs = to_command(record_type, record)
        again.execute(command, oid, **kwargs)
    assert [r for _, r in recorded(again)] == [r for _, r in recorded(first)]


def test_a_delivery_after_the_customer_was_erased_still_records_and_is_unreadable() -> None:
    keys = SqliteKeyStore(None, MASTER)
    service = OrderService.from_url("memory://", keys=keys)
    story = order_story("KL-SEAL-E", T0, ending="signed")
    for record_type, record in story[:-1]:
        command, oid, kwargs = to_command(record_type, record)
        service.execute(command, oid, **kwargs)
    keys.destroy("customer:CUST-0001")
    command, oid, kwargs = to_command(*story[-1])
    service.execute(command, oid, **kwargs)
    _, delivered = recorded(service)[-1]
    assert delivered["receiver_name"]["key_version"] == 0
    assert reveal_record("OrderDelivered", delivered, keys)["receiver_name"] is None
    assert service.find("KL-SEAL-E").status.value == "SIGNED"  # type: ignore[union-attr]


def test_a_command_without_a_subject_to_seal_under_is_invalid() -> None:
    service = OrderService.from_url("memory://", keys=SqliteKeyStore(None, MASTER))
    _, oid, kwargs = to_command(*order_story("KL-SEAL-X", T0)[0])
    with pytest.raises(InvalidCommand, match=r"command create: order KL-SEAL-X: .*no customer id"):
        service.create(oid, **{**kwargs, "customer_id": ""})
    assert service.find("KL-SEAL-X") is None


def test_by_default_the_service_seals_with_the_configured_store() -> None:
    service = OrderService.from_url("memory://")  # KUAILV_KEYSTORE=memory:// in unit tests (conftest)
    assert isinstance(service.keys, CachedKeyStore)
    drive(service, ("KL-SEAL-D", "signed"))
    assert not has_plaintext(recorded(service), PLAIN)
