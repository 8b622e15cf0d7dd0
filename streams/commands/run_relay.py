"""Run the order outbox relay: ``python -m streams.commands.run_relay [--profile dev|test]``.

Event store and Kafka come from ``config.settings``; SIGTERM/SIGINT stop it
after the current pass (a SIGKILL is fine too: the next start re-sends the
unacknowledged tail, see ``relay.py``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from config import settings as settings_mod
from schemas.topics import ORDER_EVENTS
from streams.commands.eventstore_config import eventstore_env
from streams.commands.order_service import OrderService
from streams.commands.relay import OutboxRelay, kafka_producer_factory


def build_relay(profile: str | None = None, *, topic: str = ORDER_EVENTS.name, **relay_kwargs: Any) -> OutboxRelay:
    settings = settings_mod.load(profile)
    app = OrderService(eventstore_env(settings.eventstore_url))
    return OutboxRelay(app, kafka_producer_factory(settings.kafka_bootstrap), topic=topic, **relay_kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.commands.run_relay", description=__doc__)
    parser.add_argument("--profile", default=None, help="settings profile (default: $KUAILV_PROFILE or dev)")
    parser.add_argument("--topic", default=ORDER_EVENTS.name)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    relay = build_relay(args.profile, topic=args.topic)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info("relaying %s from position %d to %s", relay.name, relay.position, relay.topic)
    relay.run_forever(args.poll_interval, stop, limit=args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
