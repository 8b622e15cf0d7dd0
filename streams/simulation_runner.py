"""Drive the simulator through the real system: order commands go to the
command side (event store -> relay -> Kafka), GPS and sensor telemetry go
straight to Kafka, as devices would send them.

Each run continues the simulated calendar where the previous run of the same
profile stopped (``.stack/<profile>/simulation.json``), so ``make run`` is
idempotent: a second run adds new orders instead of colliding with old ids.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from commands.errors import CommandError
from commands.order_service import OrderService
from config.settings import Settings
from privacy.keystore import keystore_from_settings
from projections.timefmt import ms
from schemas.codec import AvroCodec
from schemas.topics import topic_for_record
from simulator.events import T0
from simulator.traffic import Command, SimulationConfig, command_kwargs, simulate, wall_delay
from streams.sinks.kafka_output import KafkaOutput, make_producer

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


@dataclass
class SimulationProgress:
    commands: int = 0
    telemetry: int = 0
    refused: int = 0
    sim_time_ms: int = 0
    first_event_ms: int = 0
    order_ids: list[str] = field(default_factory=list)
    done: bool = False


def _calendar_file(settings: Settings) -> Path:
    return settings.stack_dir / "simulation.json"


def next_start(settings: Settings) -> int:
    path = _calendar_file(settings)
    if path.exists():
        return int(json.loads(path.read_text())["next_start"])
    return T0


def _save_calendar(settings: Settings, last_event_ms: int) -> None:
    # Next run starts on the following simulated day, so order ids (KL<date><seq>) never collide.
    next_day = (last_event_ms // DAY_MS + 2) * DAY_MS + (T0 % DAY_MS)
    path = _calendar_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"next_start": next_day}))


def simulate_into_system(settings: Settings, *, orders: int, seed: int, speedup: float,
                         progress: SimulationProgress | None = None,
                         stop: threading.Event | None = None) -> SimulationProgress:
    progress = progress or SimulationProgress()
    config = SimulationConfig(seed=seed, orders=orders, start=next_start(settings))
    progress.first_event_ms = config.start
    service = OrderService.from_url(settings.eventstore_url, keys=keystore_from_settings(settings))  # seals PII
    codec = AvroCodec()
    telemetry = KafkaOutput(make_producer(settings.kafka_bootstrap, "kuailv-simulator"))
    prev_at: int | None = None
    last_flush = time.monotonic()
    seen_orders: set[str] = set()
    for step in simulate(config, stock=True):  # with the warehouses' stock movements (kuailv.stock.v1)
        if stop is not None and stop.is_set():
            break
        if speedup > 0 and prev_at is not None:
            delay = wall_delay(prev_at, step.at, speedup)
            if delay > 0:
                time.sleep(delay)
        prev_at = step.at
        progress.sim_time_ms = step.at
        if isinstance(step, Command):
            try:
                service.execute(step.name, step.order_id, **command_kwargs(step))
                progress.commands += 1
            except CommandError as exc:  # the simulator should only issue legal commands
                progress.refused += 1
                log.error("simulator command refused: %s", exc)
            if step.order_id not in seen_orders:
                seen_orders.add(step.order_id)
                progress.order_ids.append(step.order_id)
        else:
            topic = topic_for_record(step.record_type).name
            telemetry.add(topic, step.key.encode(), codec.encode(step.record_type, step.record),
                          ms(step.record["event_time"]))
            progress.telemetry += 1
            if time.monotonic() - last_flush > 0.5:
                telemetry.flush()
                last_flush = time.monotonic()
    telemetry.flush()
    if prev_at is not None:
        _save_calendar(settings, prev_at)
    service.close()
    progress.done = True
    return progress


def run_simulation(settings: Settings, *, orders: int, seed: int, speedup: float, relay: bool = True,
                   report: Callable[[SimulationProgress], None] | None = None) -> int:
    """``kuailv simulate``: optionally with an in-process relay thread."""
    from commands.relay_main import build_relay

    stop = threading.Event()
    relay_thread = None
    if relay:
        outbox = build_relay(settings)
        relay_thread = threading.Thread(target=outbox.run_forever, args=(0.2, stop), daemon=True)
        relay_thread.start()
    progress = simulate_into_system(settings, orders=orders, seed=seed, speedup=speedup)
    if relay_thread is not None:
        stop.set()
        relay_thread.join(30)
        while outbox.run_once(10_000):  # publish what the thread had not reached yet
            pass
        outbox.close()
    print(f"simulated {len(progress.order_ids)} orders: {progress.commands} commands, {progress.telemetry} "
          f"telemetry records, {progress.refused} refused")
    return 0 if progress.refused == 0 else 1
