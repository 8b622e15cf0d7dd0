"""Run the order outbox relay (``kuailv relay``, or ``python -m commands.relay_main``).

Event store and Kafka come from ``config.settings``. SIGTERM/SIGINT stop it
after the current pass; a SIGKILL is fine too: the next start re-sends the
unacknowledged tail with the same event ids (see ``relay.py``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from commands.eventstore_config import eventstore_env
from commands.order_service import OrderService
from commands.relay import OutboxRelay, kafka_producer_factory
from config import settings as settings_mod
from config.settings import Settings
from privacy.keystore import keystore_from_settings
from schemas.topics import ORDER_EVENTS

log = logging.getLogger(__name__)


def build_relay(settings: Settings, *, topic: str | None = None, **relay_kwargs: Any) -> OutboxRelay:
    """``topic``: default the order-event topic, renamed by ``KUAILV_TOPIC_RENAMES`` like every other client."""
    app = OrderService(eventstore_env(settings.eventstore_url), keys=keystore_from_settings(settings))  # never seals
    topic = topic or settings.topic_renames.get(ORDER_EVENTS.name, ORDER_EVENTS.name)
    return OutboxRelay(app, kafka_producer_factory(settings.kafka_bootstrap), topic=topic, **relay_kwargs)


def main(settings: Settings, *, interval: float = 0.5, once: bool = False, topic: str | None = None,
         batch: int = 1000) -> int:
    """``once``: publish everything recorded so far, then return. Otherwise poll every
    ``interval`` seconds until SIGTERM/SIGINT."""
    relay = build_relay(settings, topic=topic)
    log.info("relay %s: from notification %d to %s", relay.name, relay.position, relay.topic)
    if once:
        total = 0
        while published := relay.run_once(batch):
            total += published
        relay.close()
        log.info("relay %s: published %d record(s), position %d", relay.name, total, relay.position)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    relay.run_forever(interval, stop, limit=batch)
    return 0


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m commands.relay_main", description=__doc__)
    parser.add_argument("--profile", default=None, help="settings profile (default: $KUAILV_PROFILE or dev)")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return main(settings_mod.load(args.profile), interval=args.interval, once=args.once)


if __name__ == "__main__":
    raise SystemExit(_cli())
