"""Optimistic concurrency on one SQLite file: two Application instances, then several processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands.errors import CommandRejected, ConcurrentModification
from commands.order_service import OrderService
from simulator.events import T0
from tests.unit.commands.order_commands_kit import command_for, drive, pause_after_load

Outcome = tuple[str, str]  # (who, "ok" | error class name)


def _race(url: str, commands: dict[str, Callable[[OrderService], Any]]) -> dict[str, BaseException | None]:
    """Each writer gets its own OrderService on ``url``; all load first, then all save."""
    barrier = threading.Barrier(len(commands))
    services = {who: OrderService.from_url(url) for who in commands}
    for service in services.values():
        pause_after_load(service, barrier)
    results: dict[str, BaseException | None] = {}

    def run(who: str) -> None:
        try:
            commands[who](services[who])
            results[who] = None
        except Exception as exc:
            results[who] = exc

    threads = [threading.Thread(target=run, args=(who,)) for who in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def _pay(payment_id: str) -> Callable[[OrderService], Any]:
    _, kwargs = command_for("confirm_payment", "KL1", T0 + 60_000)
    return lambda service: service.confirm_payment("KL1", **{**kwargs, "payment_id": payment_id})


def _cancel(service: OrderService) -> Any:
    _, kwargs = command_for("cancel", "KL1", T0 + 60_000)
    return service.cancel("KL1", **kwargs)


def test_second_save_of_the_same_version_fails_with_concurrent_modification(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    drive(OrderService.from_url(url), "KL1", ["create"])
    results = _race(url, {"a": _pay("PAY-A"), "b": _pay("PAY-B")})
    winners = [who for who, exc in results.items() if exc is None]
    losers = [exc for exc in results.values() if exc is not None]
    assert len(winners) == 1 and len(losers) == 1, results
    loser = losers[0]
    assert isinstance(loser, ConcurrentModification)
    assert (loser.order_id, loser.command) == ("KL1", "confirm_payment")
    assert "command confirm_payment: order KL1 was modified concurrently" in str(loser)
    order = OrderService.from_url(url).find("KL1")
    assert order is not None and order.version == 2
    assert order.view is not None and order.view["payment"]["payment_id"] == f"PAY-{winners[0].upper()}"


def test_conflicting_commands_never_both_apply_and_a_retry_rejudges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    drive(OrderService.from_url(url), "KL1", ["create"])
    results = _race(url, {"pay": _pay("PAY-1"), "cancel": _cancel})
    [(winner, _)] = [(who, exc) for who, exc in results.items() if exc is None]
    [(loser, error)] = [(who, exc) for who, exc in results.items() if exc is not None]
    assert isinstance(error, ConcurrentModification)
    service = OrderService.from_url(url)
    if loser == "cancel":  # PAID can still be cancelled
        assert _cancel(service).status.value == "CANCELLED"
    else:  # a CANCELLED order cannot be paid
        with pytest.raises(CommandRejected, match="in state CANCELLED"):
            _pay("PAY-1")(service)
    assert winner != loser


# --- several processes on one file --------------------------------------------------------------------


def _process_pay(url: str, who: int, barrier: Any, queue: Any) -> None:
    service = OrderService.from_url(url)
    _, kwargs = command_for("confirm_payment", "KL1", T0)
    barrier.wait(timeout=30)
    try:
        service.confirm_payment("KL1", **{**kwargs, "payment_id": f"PAY-{who}"})
        queue.put((who, "ok"))
    except Exception as exc:
        queue.put((who, type(exc).__name__))


def _process_create_many(url: str, who: int, n: int, barrier: Any, queue: Any) -> None:
    service = OrderService.from_url(url)
    barrier.wait(timeout=30)
    for i in range(n):
        try:
            drive(service, f"KL-{who}-{i}", ["create", "confirm_payment"])
            queue.put((who, "ok"))
        except Exception as exc:
            queue.put((who, f"{type(exc).__name__}: {exc}"))


def _run_processes(target: Callable[..., None], args_for: Callable[[int, Any, Any], tuple[Any, ...]],
                   n_procs: int, n_results: int) -> list[Outcome]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n_procs)
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=args_for(who, barrier, queue)) for who in range(n_procs)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(n_results)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_processes_racing_on_one_order_record_exactly_one_payment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    drive(OrderService.from_url(url), "KL1", ["create"])  # creates the file (and WAL mode) before the race
    results = _run_processes(_process_pay, lambda who, b, q: (url, who, b, q), n_procs=4, n_results=4)
    outcomes = sorted(outcome for _, outcome in results)
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) <= {"ok", "ConcurrentModification", "CommandRejected"}, outcomes
    order = OrderService.from_url(url).find("KL1")
    assert order is not None and order.version == 2


def test_processes_writing_different_orders_all_succeed_with_a_gap_free_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orders.sqlite"
    OrderService.from_url(url)  # create tables first
    n_procs, per_proc = 4, 15
    results = _run_processes(_process_create_many, lambda who, b, q: (url, who, per_proc, b, q),
                             n_procs=n_procs, n_results=n_procs * per_proc)
    assert [outcome for _, outcome in results if outcome != "ok"] == []
    service = OrderService.from_url(url)
    notifications = service.recorder.select_notifications(start=None, limit=10_000)
    assert [n.id for n in notifications] == list(range(1, 2 * n_procs * per_proc + 1))
    per_order: dict[Any, list[int]] = {}
    for n in notifications:
        per_order.setdefault(n.originator_id, []).append(n.originator_version)
    assert all(versions == [1, 2] for versions in per_order.values())
