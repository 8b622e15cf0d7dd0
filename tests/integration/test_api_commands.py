"""Driver and customer actions through the API into the command side (the order aggregate decides):
202 with the new status, 403 for the wrong role or tenant, 409 with the aggregate's reason, 422 naming
the field, 404 for no such order. Real HTTP against ``kuailv serve`` and a real event store (SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.avro_mapping import to_command
from commands.order_service import OrderService
from service.auth import issue
from simulator.events import T0, order_story
from tests.integration.kafka_helpers import wait_until_serving
from tests.integration.processes import ROOT

pytestmark = pytest.mark.integration
PORT = 28002
SECRET = "s" * 40


class Commands:
    def __init__(self, store: Path) -> None:
        self.url = f"sqlite:///{store}"
        self.tag = uuid.uuid4().hex[:8].upper()
        self.a, self.b = f"KLCMD{self.tag}A", f"KLCMD{self.tag}B"

    def post(self, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def _dispatched(service: OrderService, order_id: str) -> None:
    """The order's story up to its dispatch (customer CUST-0001, driver DRV-001), through the command side."""
    for record_type, record in order_story(order_id, T0):
        command, _, kwargs = to_command(record_type, record)
        service.execute(command, order_id, **kwargs)
        if command == "dispatch":
            return


@pytest.fixture(scope="module")
def cmds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commands]:
    tmp = tmp_path_factory.mktemp("commands")
    c = Commands(tmp / "eventstore.sqlite")
    service = OrderService.from_url(c.url)
    _dispatched(service, c.a)
    _dispatched(service, c.b)
    c.audit_url = f"sqlite:///{tmp / 'audit.sqlite'}"  # type: ignore[attr-defined]
    env = {**os.environ, "KUAILV_PROFILE": "test", "KUAILV_EVENTSTORE": c.url, "KUAILV_API_SECRET": SECRET,
           "KUAILV_AUDIT_STORE": c.audit_url}  # type: ignore[attr-defined]
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(PORT)], cwd=ROOT, env=env,
                              stdout=open(tmp / "serve.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{PORT}")
        c.service = service  # type: ignore[attr-defined]
        yield c
    finally:
        server.terminate()
        server.wait(15)


def token(role: str, tenant: str | None = None) -> str:
    return issue(SECRET, f"t-{role}", role, tenant)


EXCEPTION = {"reason_code": "TRAFFIC_ACCIDENT", "description": "追尾事故", "location": {"lat": 39.95, "lng": 116.45}}
DELIVERY = {"receiver_name": "李厨师", "signature_ref": "sig/api.png", "location": {"lat": 39.95, "lng": 116.45}}


def test_the_wrong_role_or_tenant_is_refused_before_the_aggregate(cmds: Commands) -> None:
    status, body = cmds.post(f"/orders/{cmds.a}/exceptions", EXCEPTION, token("merchant", "CUST-0001"))
    assert status == 403 and "may not report exception" in body["detail"]
    status, body = cmds.post(f"/orders/{cmds.a}/delivery", DELIVERY, token("driver", "DRV-999"))
    assert status == 403 and "DRV-999" in body["detail"]
    assert cmds.post(f"/orders/{cmds.a}/delivery", DELIVERY, token("warehouse_staff", "WH-BJ-CY-01"))[0] == 403
    assert cmds.service.view(cmds.a)["status"] == "DELIVERING"  # type: ignore[attr-defined]


def test_bad_payloads_are_422_naming_the_field(cmds: Commands) -> None:
    status, body = cmds.post(f"/orders/{cmds.a}/exceptions", {**EXCEPTION, "location": {"lat": 200, "lng": 1}},
                             token("driver", "DRV-001"))
    assert status == 422 and body["detail"][0]["loc"][-2:] == ["location", "lat"]
    status, body = cmds.post(f"/orders/{cmds.a}/exceptions", {**EXCEPTION, "reason_code": "ALIENS"},
                             token("driver", "DRV-001"))
    assert status == 422 and body["detail"][0]["loc"][-1] == "reason_code"
    assert cmds.post(f"/orders/KLCMD{cmds.tag}NOPE/delivery", DELIVERY, token("operator"))[0] == 404


def test_the_driver_reports_an_exception_then_an_illegal_delivery_is_409(cmds: Commands) -> None:
    status, body = cmds.post(f"/orders/{cmds.a}/exceptions", EXCEPTION, token("driver", "DRV-001"))
    assert status == 202 and body["status"] == "EXCEPTION_HANDLING", body
    view = cmds.service.view(cmds.a)  # type: ignore[attr-defined]
    assert view["status"] == "EXCEPTION_HANDLING" and view["exception"]["reason_code"] == "TRAFFIC_ACCIDENT"
    status, body = cmds.post(f"/orders/{cmds.a}/delivery", DELIVERY, token("driver", "DRV-001"))
    assert status == 409 and "not allowed in state EXCEPTION_HANDLING" in body["detail"], body


def test_the_customer_confirms_receipt(cmds: Commands) -> None:
    status, body = cmds.post(f"/orders/{cmds.b}/delivery", DELIVERY, token("customer", "CUST-0001"))
    assert status == 202 and body["status"] == "SIGNED", body
    signed = cmds.service.view(cmds.b)  # type: ignore[attr-defined]
    assert signed["signature"]["signature_ref"] == "sig/api.png"
    assert all(ln["delivered"] == ln["picked"] for ln in signed["lines"])


def test_every_attempt_is_in_the_audit_trail_with_actor_and_outcome(cmds: Commands) -> None:
    """Runs after the tests above (file order): their attempts, accepted or not, are in the ``api`` chain."""
    from audit.store import AuditStore

    store = AuditStore.from_url(cmds.audit_url)  # type: ignore[attr-defined]
    try:
        entries = list(store.entries("api"))
        assert store.verify("api").ok
    finally:
        store.close()
    seen = {(e.actor.role, e.kind, json.loads(e.payload)["details"]["outcome"]) for e in entries if e.actor}
    assert {("merchant", "order.report_exception", "denied"), ("driver", "order.deliver", "denied"),
            ("driver", "order.report_exception", "accepted"), ("driver", "order.deliver", "rejected"),
            ("customer", "order.deliver", "accepted")} <= seen, seen
    signed = [e for e in entries if e.subject == cmds.b and e.kind == "order.deliver"]
    details = json.loads(signed[-1].payload)["details"]
    assert details["signature_ref"] == "sig/api.png" and details["version"] > 1
    assert all("李厨师".encode() not in e.payload for e in entries)  # the receiver's name is personal data: not here
