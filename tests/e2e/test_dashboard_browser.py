"""The dashboard and the role pages in a real browser (Debian's Chromium driven by Playwright) against the real
service and the test stack, fed by the simulator through the real workers (``kuailv run``).

A person's checks, made by a program: the operations page loads with no console errors and its funnel shows
what ``kuailv stats`` counts; a van marker moves when a GPS ping is produced; an alert produced on Kafka is in
the feed within 2 s; a page whose service restarted reconnects and catches up without a reload; each role
sees only its own orders and a forbidden page says why. Every page is photographed: into
``KUAILV_SCREENSHOTS`` (``make screenshots`` -> docs/screenshots/) or the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.avro_mapping import to_command
from commands.order_service import OrderService
from config.settings import Settings
from projections.order_status import OrderStatus
from schemas.codec import AvroCodec
from schemas.topics import ALERTS, GPS
from service.auth import issue
from service.pages import WEB_DIST
from service.reveal import process_keystore
from simulator.events import T0, order_story
from streams.queries import order_ids, pooled_client, progress
from streams.sinks.redis_alerts import RedisAlerts
from tests.integration.kafka_helpers import SyncProducer, wait_for, wait_until_serving
from tests.integration.processes import ROOT, ProjectProcess

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: run make setup")

PORT = 28031
SECRET = "d" * 40
CODEC = AvroCodec()
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


class City:
    """The simulated city on the test stack, the service in front of it, and the browser."""

    def __init__(self, settings: Settings, logs: Path, shots: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.shots = shots
        self.env = {"KUAILV_PROFILE": "test", "KUAILV_API_SECRET": SECRET}
        self.server = ProjectProcess(["serve", "--port", str(PORT)], self.env, logs / "serve.log")
        self.producer = SyncProducer(settings.kafka_bootstrap)
        self.base = f"http://127.0.0.1:{PORT}"
        tag = f"{time.time_ns() % 10**8:08d}"
        # out for delivery with DRV-001 for CUST-0001: the driver signs one, reports an exception on another,
        # and the customer follows the third
        self.signed, self.excepted, self.followed = (f"KLBROWSER{tag}{x}" for x in "ABC")
        self.worker = ProjectProcess(["worker", "--agents", "orders", "--loglevel", "warning"], self.env,
                                     logs / "worker.log")
        self.relay = ProjectProcess(["relay", "--interval", "0.2"], self.env, logs / "relay.log")

    def dispatch(self, *order_ids: str) -> None:
        """Each order's story up to its dispatch, through the command side (the relay publishes it, the worker
        projects it)."""
        service = OrderService.from_url(self.settings.eventstore_url, keys=process_keystore(self.settings))
        for order_id in order_ids:
            for record_type, record in order_story(order_id, T0):
                command, _, kwargs = to_command(record_type, record)
                service.execute(command, order_id, **kwargs)
                if command == "dispatch":
                    break
        for order_id in order_ids:
            wait_for(lambda o=order_id: self.status(o) == "DELIVERING", 60,
                     f"{order_id} DELIVERING in Redis (worker: {self.worker.log_tail(10)})")

    def status(self, order_id: str) -> str | None:
        with pooled_client(self.settings) as r:
            raw = r.hget(f"{self.settings.redis_prefix}:order:{order_id}", "status")
        return raw.decode() if raw else None

    def start_server(self) -> None:
        self.server.start()
        wait_until_serving(self.base, what=f"kuailv serve (log: {self.server.log_tail()})")

    def url(self, role: str, tenant: str | None = None) -> str:
        return f"{self.base}/ui/#token={issue(SECRET, f'browser-{role}', role, tenant)}"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.base}{path}", headers={
            "Authorization": f"Bearer {issue(SECRET, 'check', 'operator', None)}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def shot(self, page: Any, name: str, full_page: bool = False) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)

    def produce_alert(self, alert_id: str, **fields: Any) -> None:
        now = int(time.time() * 1000)
        alert = {"alert_id": alert_id, "rule_id": "cold-chain-breach", "rule_version": 1, "severity": "CRITICAL",
                 "status": "OPEN", "order_id": None, "driver_id": None, "vehicle_id": "VAN-TEST",
                 "warehouse_id": None, "customer_id": None, "opened_at": now, "updated_at": now,
                 "resolved_at": None, "occurrences": 1, "message": f"browser test {alert_id}: compartment at 9.5 °C",
                 "evidence": {}, "location": None, "audience": ["OPERATOR", "CUSTOMER_SERVICE"], **fields}
        self.producer.send(self.settings.topic_renames.get(ALERTS.name, ALERTS.name), alert_id.encode(),
                           CODEC.encode("Alert", alert))
        self.producer.flush()
        with pooled_client(self.settings) as r:  # and into the alert store, as the alert agent writes both
            pipe = r.pipeline(transaction=False)
            RedisAlerts(r, self.settings.redis_prefix).publish([alert], pipe)
            pipe.execute()


@pytest.fixture(scope="module")
def city(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    assert (WEB_DIST / "index.html").is_file(), f"{WEB_DIST} is not built: run make setup (npm ci, npm run build)"
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run make setup"
    logs = tmp_path_factory.mktemp("dashboard")
    shots = Path(os.environ.get("KUAILV_SCREENSHOTS") or logs)
    if not shots.is_absolute():
        shots = ROOT / shots
    shots.mkdir(parents=True, exist_ok=True)
    # a simulated morning through the real workers, relay and alert rules, as `make run` runs it
    run = subprocess.run([sys.executable, "-m", "cli.main", "--profile", "test", "run", "--orders", "20", "--seed",
                          "11", "--speedup", "3000"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "KUAILV_ETA_MODEL": "auto", "KUAILV_ROUTE_PLANNER": "auto"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    c = City(stack, logs, shots)
    c.worker.start()
    c.relay.start()
    try:
        c.dispatch(c.signed, c.excepted, c.followed)
        c.start_server()
        yield c
    finally:
        c.server.stop()
        c.relay.stop()
        c.worker.stop()
        c.producer = None  # type: ignore[assignment]  # librdkafka's producer goes now, not at exit (stack stopped)


@pytest.fixture(scope="module")
def browser(city: City) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser page that records console errors and failed requests."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                           geolocation={"latitude": 39.95, "longitude": 116.45},
                                           permissions=["geolocation"])
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}\n{e.stack}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
                     if r.status >= 400 else None)

    def assert_clean(self) -> None:
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def desktop(browser: Any) -> Iterator[Page]:
    p = Page(browser, DESKTOP)
    yield p
    p.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Page]:
    p = Page(browser, PHONE)
    yield p
    p.close()


VANS = '[data-testid^="van-marker-"]'


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def connected(page: Any) -> None:
    page.wait_for_selector(f'{tid("live-status")}[data-state="connected"]', timeout=15_000)


def open_ops(city: City, tab: Page) -> Any:
    page = tab.page
    page.goto(city.url("operator"))
    page.wait_for_selector(tid("funnel-count-SIGNED"), timeout=15_000)
    connected(page)
    page.wait_for_selector(VANS, state="attached", timeout=15_000)
    return page


def test_the_operations_page_loads_clean_and_its_funnel_counts_what_kuailv_stats_counts(city: City,
                                                                                         desktop: Page) -> None:
    page = open_ops(city, desktop)
    stats = progress(city.settings)["by_status"]
    shown = {s.value: int(page.inner_text(tid(f"funnel-count-{s.value}")).replace(",", "")) for s in OrderStatus}
    assert shown == {s.value: stats.get(s.value, 0) for s in OrderStatus}
    assert sum(shown.values()) >= 23  # the run's 20 and the 3 dispatched here
    assert page.locator(VANS).count() > 0
    assert page.locator(tid("order-marker")).count() > 0
    page.wait_for_selector(f'{tid("kpi-chart")} canvas', timeout=10_000)  # uPlot drew the KPI series
    page.wait_for_selector(f'{tid("pipeline-health")} [data-topic]', timeout=10_000)
    page.wait_for_timeout(1500)  # the maps' and charts' late work, to catch its errors too
    city.shot(page, "operations", full_page=True)
    desktop.assert_clean()


def test_a_van_marker_moves_when_a_gps_ping_is_produced(city: City, desktop: Page) -> None:
    page = open_ops(city, desktop)
    marker = page.locator(VANS).first
    driver = marker.get_attribute("data-driver-id")
    assert driver
    before = (float(marker.get_attribute("data-lat")), float(marker.get_attribute("data-lng")))
    target = (round(before[0] + 0.01, 5), round(before[1] + 0.01, 5))
    with pooled_client(city.settings) as r:
        at = int(r.hget(f"{city.settings.redis_prefix}:driver:{driver}:position", "at") or 0)
    ping = {"event_id": f"browser-{driver}-{time.time_ns()}", "driver_id": driver, "vehicle_id": f"VAN-{driver}",
            "event_time": max(at, int(time.time() * 1000)) + 1000, "producer": "browser-test",
            "lat": target[0], "lng": target[1], "speed_kmh": 25.0, "heading_deg": 45.0, "accuracy_m": 5.0}
    city.producer.send(city.settings.topic_renames.get(GPS.name, GPS.name), driver.encode(),
                       CODEC.encode("GpsPing", ping))
    city.producer.flush()
    moved = f'{tid(f"van-marker-{driver}")}[data-lat="{target[0]}"]'
    page.wait_for_selector(moved, state="attached", timeout=5_000)
    assert float(page.locator(moved).get_attribute("data-lng")) == pytest.approx(target[1])
    desktop.assert_clean()


def test_an_alert_produced_on_kafka_is_in_the_feed_within_2_s_and_can_be_acknowledged(city: City,
                                                                                       desktop: Page) -> None:
    page = open_ops(city, desktop)
    alert_id = f"AL-BROWSER-{time.time_ns()}"
    t0 = time.monotonic()
    city.produce_alert(alert_id)
    item = f'{tid("alert-item")}[data-alert-id="{alert_id}"]'
    page.wait_for_selector(item, timeout=2_000)
    assert time.monotonic() - t0 < 2.0
    assert page.get_attribute(item, "data-severity") == "CRITICAL"
    page.click(f'{item} {tid("ack-button")}')
    page.wait_for_selector(f'{item}[data-acknowledged="true"]', timeout=5_000)
    acked = [a for a in city.get("/alerts?open=true&limit=1000")["alerts"] if a["alert_id"] == alert_id]
    assert acked and acked[0]["acknowledged"]["by"] == "browser-operator"
    desktop.assert_clean()


def test_a_page_whose_service_restarts_reconnects_and_catches_up_without_a_reload(city: City, desktop: Page) -> None:
    page = open_ops(city, desktop)
    page.evaluate("window.__kuailvNoReload = true")  # gone if the page reloads
    city.server.stop()
    page.wait_for_selector(f'{tid("live-status")}[data-state="reconnecting"]', timeout=10_000)
    alert_id = f"AL-MISSED-{time.time_ns()}"
    city.produce_alert(alert_id)  # produced while the page has no connection
    city.start_server()
    connected(page)
    page.wait_for_selector(f'{tid("alert-item")}[data-alert-id="{alert_id}"]', timeout=10_000)
    assert page.evaluate("window.__kuailvNoReload") is True
    # console errors from the refused reconnection attempts are the browser's own network messages
    assert [e for e in desktop.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e] == []


def _customer_with_orders(city: City) -> tuple[str, set[str]]:
    with pooled_client(city.settings) as r:
        keys = r.keys(f"{city.settings.redis_prefix}:orders:by-customer:*")
    customer = sorted(k.decode().rsplit(":", 1)[1] for k in keys)[0]
    return customer, order_ids(city.settings, customer=customer)


def test_a_merchant_sees_only_their_orders_and_is_refused_anothers(city: City, desktop: Page) -> None:
    customer, mine = _customer_with_orders(city)
    page = desktop.page
    page.goto(city.url("merchant", customer))
    page.wait_for_selector('[data-testid="merchant-order"]', timeout=15_000)
    connected(page)
    shown = {e.get_attribute("data-order-id") for e in page.query_selector_all('[data-testid="merchant-order"]')}
    assert shown and shown <= mine and len(shown) == min(len(mine), 50)
    city.shot(page, "merchant")
    others = order_ids(city.settings, status="SIGNED") - mine
    other = sorted(others)[0]
    page.goto(f"{city.base}/ui/#/orders/{other}")  # same tab: the token stays in sessionStorage
    refusal = page.wait_for_selector(tid("refusal"), timeout=10_000)
    assert f"order {other} is not one of this merchant's" in refusal.inner_text()
    city.shot(page, "refused")
    page.goto(f"{city.base}/ui/#/ops")
    assert "merchant" in page.wait_for_selector(tid("refusal"), timeout=10_000).inner_text()
    assert desktop.errors == [] or all("403" in e for e in desktop.errors)


def test_an_operator_reads_an_order_page_with_its_timeline_lines_track_and_eta(city: City, desktop: Page) -> None:
    signed = sorted(order_ids(city.settings, status="SIGNED"))
    assert signed
    page = desktop.page
    page.goto(city.url("operator"))
    page.goto(f"{city.base}/ui/#/orders/{signed[0]}")
    page.wait_for_selector(tid("order-timeline"), timeout=15_000)
    assert page.inner_text(tid("order-status")).strip() != ""
    assert page.locator(f'{tid("order-lines")} tbody tr').count() > 0
    page.wait_for_selector(f'{tid("track-line")}', state="attached", timeout=10_000)
    page.wait_for_timeout(800)
    city.shot(page, "order")
    desktop.assert_clean()


def test_a_driver_signs_and_reports_an_exception_from_their_stop_list_on_a_phone(city: City, phone: Page) -> None:
    page = phone.page
    page.goto(city.url("driver", "DRV-001"))
    page.wait_for_selector(tid("stop-list"), timeout=15_000)
    connected(page)
    stops = [e.get_attribute("data-order-id") for e in page.query_selector_all(tid("stop"))]
    assert {city.signed, city.excepted, city.followed} <= set(stops)
    assert set(stops) <= order_ids(city.settings, driver="DRV-001")  # only their own
    city.shot(page, "driver")

    stop = f'{tid("stop")}[data-order-id="{city.signed}"]'
    page.click(f"{stop} {tid('sign-button')}")
    form = page.wait_for_selector(f"{stop} {tid('sign-form')}")
    form.query_selector("input[name=receiver_name]").fill("王经理")
    box = form.query_selector("canvas").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 30)
    page.mouse.down()
    for i in range(1, 12):  # a signature, drawn
        page.mouse.move(box["x"] + 20 + i * 20, box["y"] + 30 + (i % 3) * 15)
    page.mouse.up()
    city.shot(page, "driver-signing")
    form.query_selector("button[type=submit]").click()
    try:  # the form (kept while the stop leaves the list) says the API took it
        page.wait_for_function("f => f.dataset.done === 'true'", arg=form, timeout=30_000)
    except playwright_api.TimeoutError:
        pytest.fail(f"the signing did not go through; the form says: {form.inner_text()}; {phone.errors}")
    wait_for(lambda: city.status(city.signed) == "SIGNED", 30, f"{city.signed} SIGNED through the API's command")

    stop = f'{tid("stop")}[data-order-id="{city.excepted}"]'
    page.click(f"{stop} {tid('exception-button')}")
    form = page.wait_for_selector(f"{stop} {tid('exception-form')}")
    form.query_selector("select[name=reason_code]").select_option("VEHICLE_BREAKDOWN")
    form.query_selector("textarea[name=description]").fill("冷机故障, 等待救援")
    form.query_selector("button[type=submit]").click()
    wait_for(lambda: city.status(city.excepted) == "EXCEPTION_HANDLING", 30, f"{city.excepted} in exception handling")
    # the page follows the driver live: the signed order leaves the stops without a reload
    page.wait_for_function(f"!document.querySelector('[data-testid=stop][data-order-id={city.signed}]')"
                           f" || document.querySelector('[data-testid=stop][data-order-id={city.signed}]')"
                           f".dataset.status === 'SIGNED'", timeout=10_000)
    phone.assert_clean()


def test_a_customer_follows_their_order_on_a_phone_and_may_confirm_receipt(city: City, phone: Page) -> None:
    page = phone.page
    page.goto(city.url("customer", "CUST-0001"))
    page.goto(f"{city.base}/ui/#/track/{city.followed}")
    page.wait_for_selector(f'{tid("order-status")}[data-status="DELIVERING"]', timeout=15_000)
    page.wait_for_selector(tid("eta"), state="attached", timeout=10_000)
    page.wait_for_selector(tid("sign-form"), timeout=10_000)  # e-signature: "confirm receipt"
    page.wait_for_timeout(800)
    city.shot(page, "customer-track")
    page.goto(f"{city.base}/ui/#/track/{city.signed}")  # a signed one shows its signature record
    page.wait_for_selector(f'{tid("order-status")}[data-status="SIGNED"]', timeout=15_000)
    assert "王经理" in page.inner_text(tid("signature"))
    other = sorted(order_ids(city.settings, status="SIGNED") - order_ids(city.settings, customer="CUST-0001"))[0]
    page.goto(f"{city.base}/ui/#/track/{other}")  # someone else's order: refused, with the reason
    refusal = page.wait_for_selector(tid("refusal"), timeout=10_000).inner_text()
    assert f"order {other} is not one of this customer's (customer_id CUST-0001)" in refusal
    phone.errors = [e for e in phone.errors if "403" not in e]  # the refused request itself
    phone.assert_clean()


def test_the_pages_read_in_english_too(city: City, desktop: Page) -> None:
    page = open_ops(city, desktop)
    zh = page.inner_text("body")
    page.click(tid("lang-toggle"))
    page.wait_for_function("document.documentElement.lang.startsWith('en')", timeout=5_000)
    en = page.inner_text("body")
    assert zh != en and "funnel" in en.lower()
    city.shot(page, "operations-en")
    page.click(tid("lang-toggle"))  # back to Chinese for the next page
    desktop.assert_clean()
