"""OrderService: create once, commands on missing orders, configuration, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.errors import CommandRejected, OrderAlreadyExists, OrderNotFound
from commands.eventstore_config import eventstore_env
from commands.order_service import OrderService
from simulator.events import T0
from tests.unit.commands.order_commands_kit import command_for, drive


def test_creating_an_order_twice_fails_clearly() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL1", ["create", "confirm_payment"])
    _, kwargs = command_for("create", "KL1", T0)
    with pytest.raises(OrderAlreadyExists) as info:
        service.create("KL1", **kwargs)
    assert str(info.value) == ("command create: order KL1: OrderCreated is not allowed in state PAID: "
                               "allowed only from NEW")
    assert isinstance(info.value, CommandRejected)
    assert service.find("KL1").version == 2  # type: ignore[union-attr]


def test_a_command_on_a_missing_order_fails_clearly() -> None:
    service = OrderService.from_url("memory://")
    _, kwargs = command_for("confirm_payment", "KL404", T0)
    with pytest.raises(OrderNotFound, match=r"^command confirm_payment: order KL404: PaymentConfirmed is not "
                                            r"allowed in state NEW \(no OrderCreated yet\): allowed only from CREATED"):
        service.confirm_payment("KL404", **kwargs)
    assert service.find("KL404") is None


def test_execute_rejects_unknown_commands() -> None:
    service = OrderService.from_url("memory://")
    with pytest.raises(ValueError, match="unknown command 'ship'"):
        service.execute("ship", "KL1")


def test_service_methods_mirror_the_aggregate_commands() -> None:
    import inspect

    from commands.order_aggregate import COMMANDS, Order

    for command in COMMANDS:
        service_params = list(inspect.signature(getattr(OrderService, command)).parameters.values())
        order_params = list(inspect.signature(getattr(Order, command)).parameters.values())
        assert [p.name for p in service_params[1:]] == ["order_id"] + [p.name for p in order_params[1:]
                                                                       if p.name != "order_id"], command
        defaults = {p.name: p.default for p in order_params}
        for p in service_params[2:]:
            assert p.kind is p.KEYWORD_ONLY and p.default == defaults[p.name], (command, p.name)


def test_sqlite_store_persists_across_instances_and_creates_its_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/orders.sqlite"
    first = OrderService.from_url(url)
    drive(first, "KL1", ["create", "confirm_payment"])
    second = OrderService.from_url(url)
    order = second.find("KL1")
    assert order is not None and order.status.value == "PAID" and order.version == 2
    assert (tmp_path / "nested" / "dir" / "orders.sqlite").exists()


def test_default_configuration_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAILV_EVENTSTORE", f"sqlite:///{tmp_path}/from-settings.sqlite")
    service = OrderService()
    assert service.env.get("SQLITE_DBNAME") == f"{tmp_path}/from-settings.sqlite"
    assert service.env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite"


def test_the_library_does_not_read_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("ORDERSERVICE_SQLITE_DBNAME", str(tmp_path / "hijacked.sqlite"))
    service = OrderService(eventstore_env(f"sqlite:///{tmp_path}/mine.sqlite"))
    assert type(service.factory).__module__ == "eventsourcing.sqlite"
    assert service.env.get("SQLITE_DBNAME") == f"{tmp_path}/mine.sqlite"


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    service = OrderService.from_url(f"sqlite:///{tmp_path}/wal.sqlite")
    drive(service, "KL1", ["create"])
    datastore = service.factory.datastore  # type: ignore[attr-defined]
    assert datastore.pool.is_journal_mode_wal
    assert datastore.pool.lock_timeout == 10
