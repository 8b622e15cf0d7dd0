"""SIGTERM/SIGINT -> a stop event: the long-running processes (worker, webhook and audit workers) finish
what they hold and exit 0."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any


def stop_on_signals(log: logging.Logger, finishing: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT, logging ``signal N: <finishing>``."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: %s", signum, finishing)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
