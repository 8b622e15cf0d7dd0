"""``kuailv webhooks run``: the webhook delivery worker.

Two loops in one process, sharing the store (``KUAILV_WEBHOOK_STORE``):

- the intake (``webhooks.intake``): consumes ``kuailv.alerts.v1`` and ``kuailv.order-state.v1`` in the group
  ``<KUAILV_CONSUMER_GROUP>-webhooks`` with the worker's batch loop, writes the matching deliveries into the
  outbox, then commits the offsets;
- the sender (``webhooks.sender``): sends due deliveries, retries, dead-letters, disables.

Prometheus metrics (``service.metrics``: ``kuailv_webhook_*``, and this group's consumer lag) are served on
``KUAILV_WEBHOOK_METRICS_HOST``:``KUAILV_WEBHOOK_METRICS_PORT`` (``/metrics``). Logs are JSON lines
(python-json-logger) carrying subscription id, delivery id and source topic/partition/offset. SIGTERM/SIGINT
finish the batch in hand and the attempts in flight, then exit 0. Start more processes with the same group
to scale out: deliveries are leased, so two workers never send the same one at once.
"""

from __future__ import annotations

import logging
import logging.config
import random
import sys
import threading
import time
from typing import Any

from config.settings import Settings, WebhookSettings
from streams.runtime.signals import stop_on_signals
from webhooks.delivery_policy import RetryPolicy

log = logging.getLogger(__name__)
LAG_EVERY_S = 15.0


def retry_policy(w: WebhookSettings) -> RetryPolicy:
    return RetryPolicy(first_delay_s=w.retry_first_s, factor=w.retry_factor, max_delay_s=w.retry_max_s,
                       window_s=w.retry_window_s, timeout_s=w.timeout_s,
                       disable_after_failures=w.disable_after_failures, disable_after_s=w.disable_after_s)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def group_of(settings: Settings) -> str:
    from webhooks.intake import WebhookIntake

    return settings.consumer_group + WebhookIntake.group_suffix


def json_logs(level: str) -> None:
    from service.observability import json_logging

    logging.config.dictConfig(json_logging(level))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request: ours carries the context


def serve_metrics(w: WebhookSettings) -> str | None:
    """Start the metrics endpoint (port 0: any free one); its URL, or None when switched off (port -1) or the
    port is taken."""
    if w.metrics_port < 0:
        return None
    from prometheus_client import start_http_server

    from service.metrics import REGISTRY

    try:
        server, _ = start_http_server(w.metrics_port, addr=w.metrics_host, registry=REGISTRY)
    except OSError as exc:  # deliveries matter more than their metrics: say so loudly and go on
        log.error("metrics not served on %s:%d: %s (KUAILV_WEBHOOK_METRICS_PORT)", w.metrics_host, w.metrics_port,
                  exc)
        return None
    return f"http://{w.metrics_host}:{server.server_port}/metrics"


def run_webhooks(settings: Settings, loglevel: str = "info", stop: threading.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or ``stop``); 0 on a clean stop."""
    import httpx

    from streams.sinks.kafka_output import KafkaOutput, make_producer
    from streams.worker import consumer_name, make_codec, make_loop
    from webhooks.intake import WebhookIntake
    from webhooks.sender import Sender
    from webhooks.sql import StoreError, StoreUnavailable
    from webhooks.store import WebhookStore

    json_logs(loglevel)
    w = settings.webhooks
    try:
        policy = retry_policy(w)
        store = WebhookStore.from_url(w.store_url)
    except (ValueError, StoreError, StoreUnavailable) as exc:  # WebhookStoreConfigError is a ValueError
        print(f"kuailv webhooks: {exc}", file=sys.stderr)
        return 2
    stop = stop or stop_on_signals(log, "finishing the batch and the attempts in hand")
    codec = make_codec(settings)
    me = f"{consumer_name(settings)}/webhooks"
    client = httpx.Client(follow_redirects=False, headers={"user-agent": "kuailv-webhooks/1"},
                          limits=httpx.Limits(max_connections=max(w.concurrency, 1) * 2))
    sender = Sender(store, policy, client, KafkaOutput(make_producer(settings.kafka_bootstrap, f"{me}/sender"),
                                                       renames=settings.topic_renames),
                    codec, consumer=me, clock_ms=wall_clock_ms, rng=random.Random(), concurrency=w.concurrency)
    intake = WebhookIntake(codec, store, KafkaOutput(make_producer(settings.kafka_bootstrap, f"{me}/intake"),
                                                     renames=settings.topic_renames),
                           consumer=me, wall_clock_ms=wall_clock_ms, refresh_s=w.refresh_s, on_enqueued=sender.wake)
    loop = make_loop(intake, settings)
    metrics_url = serve_metrics(w)
    print(f"kuailv webhooks: group {group_of(settings)} on {settings.kafka_bootstrap}, store {store.describe}, "
          f"{policy.max_attempts} attempts within {policy.window_s:g}s, metrics {metrics_url or 'off'}",
          file=sys.stderr, flush=True)
    log.info("delivery worker started", extra={"group": group_of(settings), "store": store.describe,
                                               "metrics": metrics_url, "max_attempts": policy.max_attempts})
    failures: list[str] = []
    threads = [threading.Thread(target=_guard, args=(name, fn, stop, failures), name=f"webhooks-{name}")
               for name, fn in (("intake", loop.run), ("sender", sender.run))]
    for t in threads:
        t.start()
    try:
        _supervise(settings, threads, stop)
    finally:
        stop.set()
        for t in threads:
            t.join()
        client.close()
        store.close()
    for f in failures:
        log.error("delivery worker failed: %s", f)
    return 1 if failures else 0


def _guard(name: str, fn: Any, stop: threading.Event, failures: list[str]) -> None:
    try:
        fn(stop)
    except Exception as exc:
        log.exception("webhooks %s stopped", name)
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
        stop.set()


def _supervise(settings: Settings, threads: list[threading.Thread], stop: threading.Event) -> None:
    """Wait for the loops; meanwhile keep this group's consumer lag gauge fresh."""
    from schemas.topics import ALERTS, ORDER_STATE
    from service.metrics import CONSUMER_LAG
    from streams.kafka_lag import group_lag

    group = group_of(settings)
    topics = [settings.topic_renames.get(t, t) for t in (ALERTS.name, ORDER_STATE.name)]
    next_lag = 0.0
    while any(t.is_alive() for t in threads):
        if time.monotonic() >= next_lag and not stop.is_set():
            next_lag = time.monotonic() + LAG_EVERY_S
            try:
                CONSUMER_LAG.labels(group).set(group_lag(settings.kafka_bootstrap, group, topics, timeout_s=5))
            except Exception as exc:  # metrics must not stop deliveries
                log.warning("consumer lag of %s not read: %s", group, exc)
        for t in threads:
            t.join(0.5)
