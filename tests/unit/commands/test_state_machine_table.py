"""The order state machine as a table, observed on real aggregates.

Rows: every state the commands can reach (``order_commands_kit.PATHS``: a
status, plus the stages that change what is allowed). Columns: every command.
Each cell drives a fresh order to the row's state through ``OrderService``
(in-memory store), runs the column's command, and records the resulting status
or ``-`` for a refusal. The observed table must equal ``EXPECTED`` below, and
every refusal must explain itself (order id, state, command, event type).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from commands.errors import CommandRejected, OrderAlreadyExists, OrderNotFound
from commands.order_aggregate import COMMANDS
from commands.order_service import OrderService
from projections.order_status import IllegalTransition
from simulator.events import T0
from tests.unit.commands.order_commands_kit import COMMAND_NAMES, PATHS, command_for, drive, status_of

# situation -> {command: status after it}; every command not listed is refused.
EXPECTED: dict[str, dict[str, str]] = {
    "NEW": {"create": "CREATED"},
    "CREATED": {"confirm_payment": "PAID", "cancel": "CANCELLED"},
    "PAID": {"check_stock": "PAID", "cancel": "CANCELLED"},
    "PAID+stock_checked": {"start_picking": "PICKING", "cancel": "CANCELLED"},
    "OUT_OF_STOCK": {"cancel": "CANCELLED"},
    "PICKING": {"weigh_line": "PICKING", "pack": "PICKING", "cancel": "CANCELLED"},
    "PICKING+packed": {"dispatch": "DELIVERING", "cancel": "CANCELLED"},
    "DELIVERING": {"report_exception": "EXCEPTION_HANDLING", "deliver": "SIGNED", "refuse": "RETURNING"},
    "EXCEPTION_HANDLING": {"dispatch": "DELIVERING", "refuse": "RETURNING", "open_claim": "CLAIMING"},
    "DELIVERING+redispatched": {"report_exception": "EXCEPTION_HANDLING", "deliver": "SIGNED",
                                "refuse": "RETURNING"},
    "SIGNED": {"start_return": "RETURNING", "open_claim": "CLAIMING"},
    "RETURNING+refused": {"complete_return": "RETURNED"},
    "RETURNING+after_signing": {"complete_return": "RETURNED"},
    "RETURNED": {},
    "CLAIMING": {"settle_claim": "CLAIM_SETTLED"},
    "CLAIMING+from_exception": {"settle_claim": "CLAIM_SETTLED"},
    "CLAIM_SETTLED": {},
    "CANCELLED": {},
    "CANCELLED+from_out_of_stock": {},
}

REFUSED = "-"


@dataclass(frozen=True)
class Cell:
    order_id: str
    outcome: str  # resulting status, or REFUSED
    error: Exception | None
    version_before: int
    version_after: int


def _run_cell(service: OrderService, situation: str, command: str) -> Cell:
    order_id = f"T:{situation}:{command}"
    at = drive(service, order_id, PATHS[situation])
    before = service.find(order_id)
    version_before = before.version if before else 0
    _, kwargs = command_for(command, order_id, at)
    try:
        order = service.execute(command, order_id, **kwargs)
    except IllegalTransition as exc:
        after = service.find(order_id)
        return Cell(order_id, REFUSED, exc, version_before, after.version if after else 0)
    return Cell(order_id, order.status.value, None, version_before, order.version)


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, Cell]]:
    service = OrderService.from_url("memory://")
    return {situation: {command: _run_cell(service, situation, command) for command in COMMAND_NAMES}
            for situation in PATHS}


def _render(rows: dict[str, dict[str, str]]) -> str:
    first = max(len(s) for s in rows)
    widths = {c: max([len(c)] + [len(r.get(c, REFUSED)) for r in rows.values()]) for c in COMMAND_NAMES}
    lines = [" " * first + " | " + " | ".join(c.ljust(widths[c]) for c in COMMAND_NAMES)]
    for situation, cells in rows.items():
        lines.append(situation.ljust(first) + " | " + " | ".join(
            cells.get(c, REFUSED).ljust(widths[c]) for c in COMMAND_NAMES))
    return "\n".join(lines)


def test_every_path_reaches_its_state(table: dict[str, dict[str, Cell]]) -> None:
    service = OrderService.from_url("memory://")
    for situation, steps in PATHS.items():
        drive(service, f"P:{situation}", steps)
        order = service.find(f"P:{situation}")
        assert (order.status.value if order else "NEW") == status_of(situation), situation


def test_observed_table_equals_the_expected_table(table: dict[str, dict[str, Cell]]) -> None:
    observed = {s: {c: cell.outcome for c, cell in row.items() if cell.outcome != REFUSED} for s, row in table.items()}
    assert observed == EXPECTED, "observed:\n" + _render(observed) + "\n\nexpected:\n" + _render(EXPECTED)


def test_every_refusal_names_order_state_command_and_event(table: dict[str, dict[str, Cell]]) -> None:
    for situation, row in table.items():
        state = "NEW (no OrderCreated yet)" if situation == "NEW" else status_of(situation)
        for command, cell in row.items():
            if cell.outcome != REFUSED:
                continue
            message = str(cell.error)
            assert isinstance(cell.error, CommandRejected), (situation, command, message)
            assert message.startswith(f"command {command}: order {cell.order_id}: {COMMANDS[command]} "
                                      f"is not allowed in state {state}: "), message
            assert cell.error.command == command and cell.error.order_id == cell.order_id
            assert cell.version_after == cell.version_before, f"refused {command} in {situation} recorded events"


def test_refusal_types(table: dict[str, dict[str, Cell]]) -> None:
    assert isinstance(table["NEW"]["deliver"].error, OrderNotFound)
    for situation in PATHS:
        if situation != "NEW":
            assert isinstance(table[situation]["create"].error, OrderAlreadyExists), situation


# --- the seed's named cases, spelled out --------------------------------------------------------


def test_sign_before_dispatch_is_refused(table: dict[str, dict[str, Cell]]) -> None:
    for situation in ("PICKING", "PICKING+packed"):
        message = str(table[situation]["deliver"].error)
        assert f"order T:{situation}:deliver" in message
        assert "OrderDelivered is not allowed in state PICKING: allowed only from DELIVERING" in message


def test_pay_twice_is_refused(table: dict[str, dict[str, Cell]]) -> None:
    assert "PaymentConfirmed is not allowed in state PAID: allowed only from CREATED" in str(
        table["PAID"]["confirm_payment"].error)


def test_cancel_after_dispatch_is_refused(table: dict[str, dict[str, Cell]]) -> None:
    for situation in ("DELIVERING", "EXCEPTION_HANDLING", "SIGNED"):
        assert table[situation]["cancel"].outcome == REFUSED
        assert f"OrderCancelled is not allowed in state {status_of(situation)}" in str(
            table[situation]["cancel"].error)


def test_dispatch_of_unpacked_order_is_refused(table: dict[str, dict[str, Cell]]) -> None:
    assert "requires packed first" in str(table["PICKING"]["dispatch"].error)


def test_redispatch_after_exception_is_allowed() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL-R", PATHS["DELIVERING+redispatched"])
    view = service.view("KL-R")
    assert view is not None
    assert view["status"] == "DELIVERING" and view["dispatch_count"] == 2
    assert view["driver"]["driver_id"] == "DRV-002"


def test_return_after_signing_is_allowed() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL-S", PATHS["RETURNED"])
    view = service.view("KL-S")
    assert view is not None and view["status"] == "RETURNED"
    assert {"delivered", "return_started", "returned"} <= set(view["stages"])


def test_partial_shortage_continues_to_picking() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL-P", PATHS["PICKING"])
    view = service.view("KL-P")
    assert view is not None and view["status"] == "PICKING"
    assert view["short_lines"] == [2]
    assert [line["short"] for line in view["lines"]] == [0.0, 1.0, 0.0]


def test_all_lines_short_is_out_of_stock() -> None:
    service = OrderService.from_url("memory://")
    drive(service, "KL-O", PATHS["OUT_OF_STOCK"])
    order = service.find("KL-O")
    assert order is not None and order.status.value == "OUT_OF_STOCK"
    with pytest.raises(CommandRejected, match="command start_picking: order KL-O: PickingStarted is not allowed "
                                              "in state OUT_OF_STOCK"):
        service.start_picking("KL-O", at=T0, warehouse_id="WH-BJ-CY-01", picker_id="PICKER-07")
