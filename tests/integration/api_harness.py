"""Shared by the API's integration tests (``test_api*.py``): the real ``kuailv serve`` called over real HTTP,
every REST response checked against the app's own OpenAPI document (openapi-core), and a private slice
of the real stack (topics, Redis prefix, InfluxDB database) fed through the real worker.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from config.settings import Settings
from schemas.codec import AvroCodec
from schemas.topics import ALL_TOPICS, GPS, ORDER_EVENTS
from service.auth import issue
from simulator.events import T0, Event, order_story
from tests.integration.kafka_helpers import SyncProducer, delete_topics, private_topics, renames_env, wait_for
from tests.integration.processes import ProjectProcess

SECRET = "x" * 40
NOT_REST = ("/openapi.json", "/docs", "/graphql")


# ---------------------------------------------------------------------------------------------- HTTP
@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str = ""
    body: bytes | None = None


@dataclass
class _Response:
    status_code: int
    content_type: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


class ApiClient:
    """``get`` validates each REST answer (any status) against ``/openapi.json``; ``checked`` counts them."""

    def __init__(self, port: int, secret: str = SECRET) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.secret = secret
        self.checked = 0
        self._openapi: OpenAPI | None = None

    def token(self, role: str, tenant: str | None = None) -> str:
        return issue(self.secret, f"test-{role}", role, tenant)

    def _call(self, method: str, path: str, token: str | None, body: bytes | None = None
              ) -> tuple[int, str, bytes]:
        req = urllib.request.Request(f"{self.base}{path}", data=body, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers.get("content-type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("content-type", ""), exc.read()

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        status, ctype, data = self._call("GET", path, token)
        if urllib.parse.urlsplit(path).path not in NOT_REST:
            self.check("GET", path, token, status, ctype, data)
        return status, json.loads(data or b"null") if "json" in ctype else data.decode()

    def post(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        """A REST command; the answer is checked against ``/openapi.json`` like a read's."""
        status, ctype, data = self._call("POST", path, token, json.dumps(body).encode())
        self.check("POST", path, token, status, ctype, data)
        return status, json.loads(data or b"null") if "json" in ctype else data.decode()

    def graphql(self, query: str, token: str | None, **variables: Any) -> tuple[int, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        status, ctype, data = self._call("POST", "/graphql", token, body)
        return status, json.loads(data or b"null") if "json" in ctype else data.decode()

    def listening(self) -> bool:
        try:
            return self._call("GET", "/healthz", None)[0] == 200
        except urllib.error.URLError:  # not listening yet
            return False

    def openapi(self) -> OpenAPI:
        if self._openapi is None:
            status, _, data = self._call("GET", "/openapi.json", None)
            assert status == 200, data[:300]
            self._openapi = OpenAPI.from_dict(json.loads(data))
        return self._openapi

    def check(self, method: str, path: str, token: str | None, status: int, ctype: str, data: bytes) -> None:
        """The answer must be one the OpenAPI document describes for this operation and status."""
        parts = urllib.parse.urlsplit(path)
        headers = Headers({"Authorization": f"Bearer {token}"} if token else {})
        params = RequestParameters(query=ImmutableMultiDict(urllib.parse.parse_qsl(parts.query)), header=headers)
        request = _Request(self.base, parts.path, method.lower(), params)
        try:
            self.openapi().validate_response(request, _Response(status, ctype.lower(), data))
        except Exception as exc:
            why = getattr(exc.__cause__, "schema_errors", None) or exc.__cause__ or ""
            raise AssertionError(f"{method} {path} -> {status} does not match /openapi.json: {exc!r} {why}\n"
                                 f"{data[:500]!r}") from exc
        self.checked += 1


def serve(port: int, env: dict[str, str], logs: Path) -> ProjectProcess:
    """``kuailv serve`` on ``port`` with ``env``, listening when this returns."""
    server = ProjectProcess(["serve", "--port", str(port)], env, logs / f"serve-{port}.log").start()
    client = ApiClient(port, env.get("KUAILV_API_SECRET", SECRET))
    try:
        wait_for(lambda: client.listening() or not server.alive(), 30, "kuailv serve to listen", interval=0.3)
    except AssertionError:
        server.stop()
        raise
    assert server.alive(), server.log_tail()
    return server


# ---------------------------------------------------------------------------------------------- data
def story(order_id: str, customer: str, *, ending: str = "signed", warehouse: str | None = None,
          driver: str | None = None, upto: str | None = None) -> list[Event]:
    """``simulator.events.order_story`` for another customer (warehouse, driver), cut after ``upto``."""
    events = order_story(order_id, T0, ending=ending)
    if upto is not None:
        events = events[:[t for t, _ in events].index(upto) + 1]
    for t, e in events:
        if t == "OrderCreated":
            e["customer_id"] = customer
        if warehouse and t in ("OrderCreated", "StockChecked"):
            e["warehouse_id"] = warehouse
        if driver and t == "OrderDispatched":
            e.update(driver_id=driver, vehicle_id=vehicle_of(driver))
    return events


def vehicle_of(driver: str) -> str:
    return f"VAN-{driver.removeprefix('DRV-')}"


def dispatched_at(events: list[Event]) -> int:
    return int(next(e["event_time"] for t, e in events if t == "OrderDispatched"))


class Slice:
    """A private slice of the test stack for one module: copies of every topic, a Redis key prefix and an
    InfluxDB database of its own (created here, dropped by ``close``), and the env that points the worker
    and the server at them."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.tag = uuid.uuid4().hex[:8]
        self.topics = private_topics(settings.kafka_bootstrap, f"{name}-{self.tag}", ALL_TOPICS)
        self.prefix = f"{name}{self.tag}"
        self.influx_db = f"kuailv_{name}_{self.tag}"
        self._influx("CREATE DATABASE")
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_CONSUMER_GROUP": f"kuailv-{name}-{self.tag}",
                    "KUAILV_REDIS_PREFIX": self.prefix, "KUAILV_WORKER_BATCH_SECONDS": "0.1",
                    "KUAILV_TOPIC_RENAMES": renames_env(self.topics), "KUAILV_API_SECRET": SECRET,
                    "KUAILV_INFLUX_DB": self.influx_db}
        self.codec = AvroCodec(epoch_ms=True)
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.redis = redis.Redis.from_url(settings.redis_url)
        self._seq = 0

    def _influx(self, verb: str) -> None:
        q = urllib.parse.urlencode({"q": f'{verb} "{self.influx_db}"'}).encode()
        with urllib.request.urlopen(f"{self.settings.influx_url}/query", data=q, timeout=10) as resp:
            assert resp.status == 200 and b'"error"' not in (body := resp.read()), body

    def worker(self, agents: str, logs: Path) -> ProjectProcess:
        return ProjectProcess(["worker", "--agents", agents, "--loglevel", "warning"], self.env,
                              logs / f"worker-{self.tag}.log").start()

    def send(self, order_id: str, events: Iterable[Event]) -> None:
        for t, e in events:
            self.producer.send(self.topics[ORDER_EVENTS.name], order_id.encode(), self.codec.encode(t, e))
        self.producer.flush()

    def pings(self, driver: str, start: int, count: int, step_ms: int = 10_000,
              at: tuple[float, float] = (39.93, 116.45)) -> None:
        """``count`` GPS pings of ``driver``'s van from ``start``, heading east."""
        for n in range(count):
            self._seq += 1
            value = {"event_id": f"{self.tag}-{self._seq}", "driver_id": driver, "vehicle_id": vehicle_of(driver),
                     "event_time": start + n * step_ms, "producer": "driver-app/test", "lat": at[0],
                     "lng": at[1] + n * 0.0005, "speed_kmh": 25.0, "heading_deg": 90.0, "accuracy_m": 5.0}
            self.producer.send(self.topics[GPS.name], driver.encode(), self.codec.encode("GpsPing", value))
        self.producer.flush()

    def close(self) -> None:
        delete_topics(self.settings.kafka_bootstrap, self.topics.values())
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()
        self._influx("DROP DATABASE")


# ---------------------------------------------------------------------------------------------- two tenants
@dataclass(frozen=True)
class Tenant:
    """One customer's order out for delivery: its customer, driver (and van) and warehouse."""

    order_id: str
    customer: str
    driver: str
    warehouse: str

    def claim(self, role: str) -> str | None:
        """The tenant claim a token of ``role`` carries for this tenant."""
        return {"merchant": self.customer, "customer": self.customer, "driver": self.driver,
                "warehouse_staff": self.warehouse}.get(role)


PINGS = 40


def seed_two_tenants(sl: Slice, name: str) -> tuple[Tenant, Tenant]:
    """Two orders of two customers, from two warehouses, dispatched to two drivers and out for delivery;
    each van sends ``PINGS`` GPS pings (10 s apart) after its dispatch. Returns once the worker (agents
    orders, telemetry, geofences, alerts, fleet) has projected them all: the orders in Redis, the tracks in
    InfluxDB, the positions, the loads in the fleet view and the orders' open shortage alerts."""
    import dataclasses

    from service import track
    from streams import queries

    up = name.upper()
    a, b = (Tenant(f"KL{up}{sl.tag}{s}", f"CUST-{sl.tag}-{s}", f"DRV-{sl.tag}{s}", wh)
            for s, wh in (("A", "WH-BJ-CY-01"), ("B", "WH-BJ-FT-01")))
    stories = {t: story(t.order_id, t.customer, warehouse=t.warehouse, driver=t.driver, upto="OrderDispatched")
               for t in (a, b)}
    for t, events in stories.items():
        sl.send(t.order_id, events)
    wait_for(lambda: all(sl.redis.hget(f"{sl.prefix}:order:{t.order_id}", "status") == b"DELIVERING"
                         for t in (a, b)), 60, "the worker to project both orders as DELIVERING")
    for t, events in stories.items():
        sl.pings(t.driver, dispatched_at(events) + 10_000, PINGS)
    s = dataclasses.replace(sl.settings, redis_prefix=sl.prefix, influx_db=sl.influx_db)

    def projected(t: Tenant) -> bool:
        load = queries.driver_load(s, t.driver)
        counted = track.influx_query(s, f"SELECT count(lat) FROM gps WHERE driver_id = '{t.driver}'")
        return (load is not None and load["order_ids"] == [t.order_id] and bool(counted)
                and counted[0]["values"][0][1] == PINGS and queries.driver_position(s, t.driver) is not None
                and bool(queries.alert_listing(s, order_id=t.order_id)))

    wait_for(lambda: all(projected(t) for t in (a, b)), 90,
             "tracks in InfluxDB, positions, loads and alerts of both drivers")
    return a, b
