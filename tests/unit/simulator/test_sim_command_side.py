"""Contract with the command side: every generated command is accepted by ``OrderService`` (in memory)
and records exactly the event ``command_to_event`` predicts (same fields, same values once its personal
fields are opened; ids differ)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from commands.avro_mapping import to_avro
from commands.eventstore_config import eventstore_env
from commands.order_aggregate import order_uuid
from commands.order_service import OrderService
from privacy.fields import reveal_record
from simulator.traffic import Command, SimulationConfig, command_kwargs, event_log, simulate

STORMY = SimulationConfig(seed=3, orders=80, gps_interval_s=60.0, sensor_interval_s=600.0, p_unpaid=0.05,
                          p_cancel=0.1, p_out_of_stock=0.05, p_accident=0.05, p_refused=0.1, p_damaged=0.1,
                          p_return_after_sign=0.1)


def without_id(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "event_id"}


def test_command_side_accepts_every_command_and_records_the_predicted_event() -> None:
    service = OrderService(eventstore_env("memory://"))
    names = set()
    for step in simulate(STORMY):
        if isinstance(step, Command):
            service.execute(step.name, step.order_id, **command_kwargs(step))
            names.add(step.name)
    assert len(names) == 15
    predicted: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for record_type, record in event_log(STORMY):
        if "order_id" in record:
            predicted[record["order_id"]].append((record_type, without_id(record)))
    assert len(predicted) == STORMY.orders
    for order_id, events in predicted.items():
        recorded = [to_avro(e) for e in service.events.get(order_uuid(order_id))]
        opened = [(t, reveal_record(t, r, service.keys)) for t, r in recorded]  # stored sealed
        assert [(t, without_id(r)) for t, r in opened] == events, order_id
