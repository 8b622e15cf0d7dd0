"""Errors of the command side. Each names the order id and the command.

``CommandRejected`` is an ``IllegalTransition`` (the shared state machine said
no) and ``InvalidCommand`` is an ``InvalidEvent`` (the data is impossible), so
callers that already handle the pure core's errors handle these too.
"""

from __future__ import annotations

from projections.order_events import InvalidEvent
from projections.order_status import IllegalTransition


class CommandError(Exception):
    """A command on an order failed; ``order_id`` and ``command`` say which."""

    def __init__(self, order_id: str, command: str, message: str) -> None:
        Exception.__init__(self, message)  # not super(): IllegalTransition/InvalidEvent may follow in the MRO
        self.order_id = order_id
        self.command = command


class CommandRejected(CommandError, IllegalTransition):
    """The order's current state does not allow the command.

    Message: ``command deliver: order KL1: OrderDelivered is not allowed in
    state PICKING: allowed only from DELIVERING``.
    """

    def __init__(self, command: str, cause: IllegalTransition) -> None:
        CommandError.__init__(self, cause.order_id, command, f"command {command}: {cause}")
        self.status = cause.status
        self.event_type = cause.event_type


class OrderNotFound(CommandRejected):
    """A command other than ``create`` on an order that was never created."""


class OrderAlreadyExists(CommandRejected):
    """``create`` on an order id that already has events."""


class InvalidCommand(CommandError, InvalidEvent):
    """The command's data is impossible in any state (negative weight, unknown line, ...)."""

    def __init__(self, order_id: str, command: str, cause: InvalidEvent) -> None:
        CommandError.__init__(self, order_id, command, f"command {command}: order {order_id}: {cause}")


class ConcurrentModification(CommandError):
    """Another writer saved events for the order between our load and our save.

    Nothing of this command was recorded; reload and retry the command if it
    still makes sense.
    """

    def __init__(self, order_id: str, command: str) -> None:
        CommandError.__init__(
            self,
            order_id,
            command,
            f"command {command}: order {order_id} was modified concurrently by another writer; "
            "nothing was recorded, reload and retry",
        )
