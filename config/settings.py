"""One settings object, read from the environment, with working local defaults.

Nothing here connects to anything. Stack profiles exist so the test stack
never collides with the dev stack (or with services on default ports):

=========  ===============  ==========  =====  =================  ==========
profile    Kafka            controller  Redis  InfluxDB           PostgreSQL
=========  ===============  ==========  =====  =================  ==========
dev        127.0.0.1:19092  19093       16379  18086 (rpc 18088)  15432
test       127.0.0.1:29092  29093       26379  28086 (rpc 28088)  25432
load       127.0.0.1:31092  31093       31379  31086 (rpc 31088)  31432
scale      127.0.0.1:32092  32093       32379  32086 (rpc 32088)  32432
=========  ===============  ==========  =====  =================  ==========

``load`` is the stack of the city-scale load test (``make load``), ``scale`` the one of the
scale-out benchmark (``make bench-scale``): both fill their stores with throw-away data,
so neither shares a stack with the data a developer keeps in ``dev``. Every port is below 32768, where
Linux starts handing out ephemeral ports: a listener there can find its port taken by a client socket.

PostgreSQL is optional (``python -m infra.postgres start``, not part of the
main stack); the event store stays SQLite unless ``KUAILV_EVENTSTORE`` says
``postgresql://...`` (``infra.postgres.url(profile)`` gives the local one).

Every value can be overridden, e.g. ``KUAILV_KAFKA_BOOTSTRAP=broker:9092``
points the workers at a real cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_PORTS = {
    "dev": {"kafka": 19092, "controller": 19093, "redis": 16379, "influx": 18086, "influx_rpc": 18088,
            "postgres": 15432, "api": 18000, "webhook_metrics": 18010},
    "test": {"kafka": 29092, "controller": 29093, "redis": 26379, "influx": 28086, "influx_rpc": 28088,
             "postgres": 25432, "api": 28000, "webhook_metrics": 28010},
    "load": {"kafka": 31092, "controller": 31093, "redis": 31379, "influx": 31086, "influx_rpc": 31088,
             "postgres": 31432, "api": 31000, "webhook_metrics": 31010},
    "scale": {"kafka": 32092, "controller": 32093, "redis": 32379, "influx": 32086, "influx_rpc": 32088,
              "postgres": 32432, "api": 32000, "webhook_metrics": 32010},
}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class WebhookSettings:
    """Push delivery to webhook subscribers (``webhooks/``, ``kuailv webhooks run``; docs/webhooks.md)."""

    store_url: str = "memory://"  # subscriptions + delivery outbox: sqlite:///path, postgresql://..., memory://
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 18010  # the delivery worker's /metrics (0: any free port, -1: none)
    retry_first_s: float = 5.0  # ceiling of the first retry's delay; each next ceiling x retry_factor
    retry_factor: float = 5.0
    retry_max_s: float = 7200.0  # no retry ceiling above this
    retry_window_s: float = 86400.0  # the ceilings add up to at most this: the last attempt's bound
    timeout_s: float = 10.0  # one HTTP attempt (connect + send + answer)
    concurrency: int = 16  # HTTP requests in flight per worker process
    disable_after_failures: int = 20  # dead-lettered deliveries in a row that disable a subscription
    disable_after_s: float = 5 * 86400.0  # ... or failing without a success for this long
    rotation_grace_s: float = 86400.0  # a rotated secret still signs (second signature) this long
    refresh_s: float = 1.0  # the worker re-reads the subscriptions at most this often


@dataclass(frozen=True)
class Settings:
    profile: str
    kafka_bootstrap: str
    kafka_port: int
    kafka_controller_port: int
    redis_url: str
    redis_port: int
    influx_url: str
    influx_port: int
    influx_rpc_port: int
    influx_db: str
    schema_registry_url: str | None
    state_dir: Path
    eventstore_url: str
    consumer_group: str
    redis_prefix: str
    worker_batch_size: int
    worker_batch_seconds: float
    state_cache_keys: int
    # How long the group waits for a silent worker (killed, frozen) before its partitions move to the others;
    # the broker's group.min.session.timeout.ms (6 s by default) is the floor.
    consumer_session_timeout_ms: int
    postgres_port: int
    fence_file: Path | None = None  # None: config/geofences.v1.json (config.geofences)
    geofence_lateness_ms: int = 30_000
    alert_rules_file: Path = PROJECT_ROOT / "config" / "alert_rules.v1.json"
    alert_lateness_ms: int = 60_000
    fleet_capacity_kg: float = 1_500.0  # a van's load limit for re-dispatch suggestions
    # The ETA / delay-risk estimator (config/eta_model.py): "auto" (the current trained artifact under
    # <state_dir>/models/eta, else the distance-speed baseline), "baseline", or an artifact directory.
    eta_model: str = "auto"
    route_planner: str = "auto"  # the stops' visiting order: "auto" (planned when travel times exist), "nearest"
    api_host: str = "127.0.0.1"
    api_port: int = 18000
    api_secret: str = ""  # HS256 key of the API's tokens; "" = the local development key (service.auth)
    api_token_ttl_s: int = 12 * 3600
    api_tls_cert: str = ""  # PEM certificate (chain) file: the API serves HTTPS/WSS when set, with api_tls_key
    api_tls_key: str = ""
    # an online map tile source for the dashboard (a Leaflet URL template, e.g. https://tile.example/{z}/{x}/{y}.png);
    # empty: the shipped Beijing district outlines only (this machine has no internet)
    map_tile_url: str = ""
    log_format: str = "text"  # "json": one JSON object per log line (service, delivery worker)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    audit_store: str = "memory://"  # the audit chains (audit/, docs/audit.md): sqlite:///path, postgresql://...
    audit_hmac_keys: str = field(default="", repr=False)  # "id:secret,...": the first keys new audit entries
    keystore_url: str = "memory://"  # per-data-subject keys (privacy/keystore.py): sqlite:///path (or a KMS hook)
    master_key: str = field(default="", repr=False)  # base64 of 32 bytes wrapping them; "" = the dev key. Never logged
    keystore_cache_ttl_s: float = 60.0  # how long a worker keeps a key (and may still use a key destroyed elsewhere)
    topic_renames: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def stack_dir(self) -> Path:
        return self.state_dir / self.profile


def load(profile: str | None = None) -> Settings:
    profile = profile or _env("KUAILV_PROFILE", "dev")
    if profile not in _PORTS:
        raise ValueError(f"KUAILV_PROFILE must be one of {sorted(_PORTS)}, got {profile!r}")
    ports = _PORTS[profile]
    # Absolute: services run with their data dir as working directory and read config by path.
    state_dir = Path(_env("KUAILV_STATE_DIR", str(PROJECT_ROOT / ".stack"))).resolve()
    kafka_port = int(_env("KUAILV_KAFKA_PORT", str(ports["kafka"])))
    redis_port = int(_env("KUAILV_REDIS_PORT", str(ports["redis"])))
    influx_port = int(_env("KUAILV_INFLUX_PORT", str(ports["influx"])))
    return Settings(
        profile=profile,
        kafka_bootstrap=_env("KUAILV_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
        kafka_port=kafka_port,
        kafka_controller_port=int(_env("KUAILV_KAFKA_CONTROLLER_PORT", str(ports["controller"]))),
        redis_url=_env("KUAILV_REDIS_URL", f"redis://127.0.0.1:{redis_port}/0"),
        redis_port=redis_port,
        influx_url=_env("KUAILV_INFLUX_URL", f"http://127.0.0.1:{influx_port}"),
        influx_port=influx_port,
        influx_rpc_port=int(_env("KUAILV_INFLUX_RPC_PORT", str(ports["influx_rpc"]))),
        influx_db=_env("KUAILV_INFLUX_DB", "kuailv"),
        schema_registry_url=os.environ.get("SCHEMA_REGISTRY_URL") or None,
        state_dir=state_dir,
        eventstore_url=_env("KUAILV_EVENTSTORE", f"sqlite:///{state_dir / profile / 'eventstore.sqlite'}"),
        consumer_group=_env("KUAILV_CONSUMER_GROUP", "kuailv-projector"),
        redis_prefix=_env("KUAILV_REDIS_PREFIX", "kuailv"),
        worker_batch_size=int(_env("KUAILV_WORKER_BATCH_SIZE", "500")),
        worker_batch_seconds=float(_env("KUAILV_WORKER_BATCH_SECONDS", "0.2")),
        state_cache_keys=int(_env("KUAILV_STATE_CACHE_KEYS", "50000")),
        consumer_session_timeout_ms=int(_env("KUAILV_CONSUMER_SESSION_TIMEOUT_MS", "6000")),
        postgres_port=int(_env("KUAILV_POSTGRES_PORT", str(ports["postgres"]))),
        fence_file=Path(os.environ["KUAILV_FENCES"]) if os.environ.get("KUAILV_FENCES") else None,
        geofence_lateness_ms=int(_env("KUAILV_GEOFENCE_LATENESS_MS", "30000")),
        alert_rules_file=Path(_env("KUAILV_ALERT_RULES", str(PROJECT_ROOT / "config" / "alert_rules.v1.json"))),
        alert_lateness_ms=int(_env("KUAILV_ALERT_LATENESS_MS", "60000")),
        fleet_capacity_kg=float(_env("KUAILV_FLEET_CAPACITY_KG", "1500")),
        eta_model=_env("KUAILV_ETA_MODEL", "auto"),
        route_planner=_env("KUAILV_ROUTE_PLANNER", "auto"),
        api_host=_env("KUAILV_API_HOST", "127.0.0.1"),
        api_port=int(_env("KUAILV_API_PORT", str(ports["api"]))),
        api_secret=os.environ.get("KUAILV_API_SECRET", ""),
        api_token_ttl_s=int(_env("KUAILV_API_TOKEN_TTL_S", str(12 * 3600))),
        api_tls_cert=os.environ.get("KUAILV_API_TLS_CERT", ""),
        api_tls_key=os.environ.get("KUAILV_API_TLS_KEY", ""),
        map_tile_url=os.environ.get("KUAILV_MAP_TILE_URL", ""),
        log_format=_env("KUAILV_LOG_FORMAT", "text"),
        webhooks=_webhooks(state_dir / profile, ports["webhook_metrics"]),
        audit_store=_env("KUAILV_AUDIT_STORE", f"sqlite:///{state_dir / profile / 'audit.sqlite'}"),
        audit_hmac_keys=os.environ.get("KUAILV_AUDIT_HMAC_KEYS", ""),
        keystore_url=_env("KUAILV_KEYSTORE", f"sqlite:///{state_dir / profile / 'keys.sqlite'}"),
        master_key=os.environ.get("KUAILV_MASTER_KEY", ""),
        keystore_cache_ttl_s=float(_env("KUAILV_KEYSTORE_CACHE_TTL_S", "60")),
        topic_renames=_renames(os.environ.get("KUAILV_TOPIC_RENAMES", "")),
    )


def _webhooks(stack_dir: Path, metrics_port: int) -> WebhookSettings:
    w = WebhookSettings()
    return WebhookSettings(
        store_url=_env("KUAILV_WEBHOOK_STORE", f"sqlite:///{stack_dir / 'webhooks.sqlite'}"),
        metrics_host=_env("KUAILV_WEBHOOK_METRICS_HOST", w.metrics_host),
        metrics_port=int(_env("KUAILV_WEBHOOK_METRICS_PORT", str(metrics_port))),
        retry_first_s=float(_env("KUAILV_WEBHOOK_RETRY_FIRST_S", str(w.retry_first_s))),
        retry_factor=float(_env("KUAILV_WEBHOOK_RETRY_FACTOR", str(w.retry_factor))),
        retry_max_s=float(_env("KUAILV_WEBHOOK_RETRY_MAX_S", str(w.retry_max_s))),
        retry_window_s=float(_env("KUAILV_WEBHOOK_RETRY_WINDOW_S", str(w.retry_window_s))),
        timeout_s=float(_env("KUAILV_WEBHOOK_TIMEOUT_S", str(w.timeout_s))),
        concurrency=int(_env("KUAILV_WEBHOOK_CONCURRENCY", str(w.concurrency))),
        disable_after_failures=int(_env("KUAILV_WEBHOOK_DISABLE_AFTER_FAILURES", str(w.disable_after_failures))),
        disable_after_s=float(_env("KUAILV_WEBHOOK_DISABLE_AFTER_S", str(w.disable_after_s))),
        rotation_grace_s=float(_env("KUAILV_WEBHOOK_ROTATION_GRACE_S", str(w.rotation_grace_s))),
        refresh_s=float(_env("KUAILV_WEBHOOK_REFRESH_S", str(w.refresh_s))),
    )


def _renames(spec: str) -> dict[str, str]:
    """``contract-name=actual-name,...``: run the workers on other topics (benchmarks, side-by-side runs)."""
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, sep, actual = item.partition("=")
        if not sep or not name.strip() or not actual.strip():
            raise ValueError(f"KUAILV_TOPIC_RENAMES: expected contract-name=actual-name, got {item!r}")
        out[name.strip()] = actual.strip()
    return out
