"""The generator's public contract: payload shapes, the event envelope, config checks, wall_delay."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.catalog import CommittedCatalog
from simulator.events import T0
from simulator.traffic import (
    COMMAND_EVENTS,
    Command,
    SimulationConfig,
    Telemetry,
    command_kwargs,
    command_to_event,
    simulate,
    wall_delay,
)

ENVELOPE = {"event_id", "order_id", "version", "event_time", "producer"}
STORMY = {"p_unpaid": 0.1, "p_cancel": 0.1, "p_out_of_stock": 0.1, "p_partial_shortage": 0.3,
          "p_accident": 0.08, "p_refused": 0.15, "p_damaged": 0.15, "p_return_after_sign": 0.15}


def test_payloads_hold_exactly_the_avro_payload_fields() -> None:
    catalog = CommittedCatalog.load()
    fields = {name: {f["name"] for f in catalog.latest(name).raw["fields"]} - ENVELOPE
              for name in COMMAND_EVENTS.values()}
    seen = set()
    for step in simulate(SimulationConfig(seed=9, orders=60, gps_interval_s=60.0, **STORMY)):
        if isinstance(step, Command):
            assert set(step.payload) == fields[step.event_type], step.name
            seen.add(step.name)
        else:
            assert isinstance(step, Telemetry) and step.record["event_time"] == step.at
    assert seen == set(COMMAND_EVENTS)


def test_command_to_event_wraps_the_payload() -> None:
    cmd = Command(T0, "KL202606010001", "pack", {"package_count": 2, "packer_id": "PACKER-01"})
    record_type, record = command_to_event(cmd, 7)
    assert record_type == "OrderPacked"
    assert record["version"] == 7 and record["event_time"] == T0 and record["producer"] == "wms"
    assert record["package_count"] == 2 and record["event_id"] == command_to_event(cmd, 7)[1]["event_id"]
    assert record["event_id"] != command_to_event(cmd, 8)[1]["event_id"]


def test_command_kwargs_leave_derived_fields_to_the_aggregate() -> None:
    create = next(s for s in simulate(SimulationConfig(orders=1)) if isinstance(s, Command))
    kwargs = command_kwargs(create)
    assert kwargs["at"] == create.at and kwargs["producer"] == "order-service"
    assert "total_cents" not in kwargs and set(kwargs) == set(create.payload) - {"total_cents"} | {"at", "producer"}


# -- helpers and checks --------------------------------------------------------------------------------------


def test_wall_delay() -> None:
    assert wall_delay(T0, T0 + 60_000, 60) == pytest.approx(1.0)
    assert wall_delay(T0, T0 + 5_000, 1) == pytest.approx(5.0)
    assert wall_delay(T0, T0, 10) == 0.0
    assert wall_delay(T0 + 1, T0, 10) == 0.0
    assert wall_delay(T0, T0 + 60_000, float("inf")) == 0.0
    with pytest.raises(ValueError):
        wall_delay(T0, T0 + 1, 0)


@pytest.mark.parametrize("bad", [{"p_refused": 1.5}, {"n_drivers": 3}, {"gps_interval_s": 0}, {"orders": -1},
                                 {"p_refused": 0.6, "p_damaged": 0.6}])
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**bad)


def test_no_orders_no_traffic() -> None:
    assert list(simulate(SimulationConfig(orders=0))) == []
