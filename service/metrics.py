"""Prometheus metrics of the service and the webhook delivery worker (``GET /metrics``).

One registry per process (``REGISTRY``), created at import without touching the network. The
names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms, base units):

| metric | kind | labels | what |
|---|---|---|---|
| ``kuailv_api_requests_total`` | counter | method, route, status | HTTP requests answered |
| ``kuailv_api_request_seconds`` | histogram | method, route | time to answer |
| ``kuailv_ws_clients`` | gauge | | WebSocket clients connected now |
| ``kuailv_ws_messages_total`` | counter | kind | changes and alerts sent to WebSocket clients |
| ``kuailv_ws_dropped_total`` | counter | | clients closed because they could not keep up |
| ``kuailv_webhook_deliveries_total`` | counter | outcome | delivery attempts (delivered, failed, timeout) |
| ``kuailv_webhook_retries_total`` | counter | | attempts scheduled again after a failure |
| ``kuailv_webhook_dead_letters_total`` | counter | | deliveries given up (dead-letter record written) |
| ``kuailv_webhook_disabled_total`` | counter | | subscriptions disabled after failing too long |
| ``kuailv_consumer_lag`` | gauge | group | records the group has not committed yet (read at scrape) |
| ``kuailv_audit_actions_total`` | counter | outcome | API actions appended to the audit trail (recorded, failed) |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

API_REQUESTS = Counter("kuailv_api_requests_total", "HTTP requests answered", ["method", "route", "status"],
                       registry=REGISTRY)
API_LATENCY = Histogram("kuailv_api_request_seconds", "Time to answer an HTTP request", ["method", "route"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                        registry=REGISTRY)
WS_CLIENTS = Gauge("kuailv_ws_clients", "WebSocket clients connected now", registry=REGISTRY)
WS_MESSAGES = Counter("kuailv_ws_messages_total", "Changes and alerts sent to WebSocket clients", ["kind"],
                      registry=REGISTRY)
WS_DROPPED = Counter("kuailv_ws_dropped_total", "WebSocket clients closed because they could not keep up",
                     registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("kuailv_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"],
                             registry=REGISTRY)
WEBHOOK_RETRIES = Counter("kuailv_webhook_retries_total", "Webhook attempts scheduled again after a failure",
                          registry=REGISTRY)
WEBHOOK_DEAD_LETTERS = Counter("kuailv_webhook_dead_letters_total", "Webhook deliveries given up",
                               registry=REGISTRY)
WEBHOOK_DISABLED = Counter("kuailv_webhook_disabled_total", "Subscriptions disabled after failing too long",
                           registry=REGISTRY)
CONSUMER_LAG = Gauge("kuailv_consumer_lag", "Records a consumer group has not committed yet", ["group"],
                     registry=REGISTRY)
AUDIT_ACTIONS = Counter("kuailv_audit_actions_total", "API actions appended to the audit trail", ["outcome"],
                        registry=REGISTRY)
