"""The README's main job (`kuailv run`) end to end on the test stack: workers,
relay and simulator as a user runs them, live progress, an order printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from config.settings import Settings
from tests.integration.processes import ROOT

pytestmark = pytest.mark.e2e


def kuailv(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "--profile", "test", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_main_job_runs_the_simulated_city_end_to_end(stack: Settings) -> None:
    # As `make run` runs it: the model and the stop order setup trained (.stack/models/eta), not the tests' baseline.
    # Paced at 1,000x as `make run` is: at full speed the GPS outruns the orders (README, "The two commands").
    run = kuailv("run", "--orders", "40", "--seed", "3", "--speedup", "1000", timeout=600,
                 env={"KUAILV_ETA_MODEL": "auto", "KUAILV_ROUTE_PLANNER": "auto"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    progress = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert progress and "ev/s" in progress[-1] and "dead letters" in progress[-1]
    assert "simulated 40 orders" in run.stdout
    api = [line for line in run.stdout.splitlines() if line.startswith("API: GET ")]
    assert api and "-> 200 in" in api[0], api  # the service people use answered, with a token
    hooks = [line for line in run.stdout.splitlines() if line.startswith("webhooks: delivery worker ran")]
    assert hooks, run.stdout[-2000:]  # the webhook delivery worker ran beside the workers and reported
    live = re.search(r"^live feed: (\d+) alert changes pushed over /ws", run.stdout, re.M)
    assert live and int(live.group(1)) > 0, run.stdout[-2000:]  # alerts reached a WebSocket client as they opened
    audit = re.search(r"^audit: ([\d,]+) entries in (\d+) hash chains, all intact", run.stdout, re.M)
    assert audit and int(audit.group(1).replace(",", "")) >= 40, run.stdout[-2000:]  # the order log, chained
    assert re.search(r"^models: ETA and delay risk hgb/\S+ .*stop order ortools/", run.stdout, re.M), \
        run.stdout[:3000]  # the workers loaded the trained model and the OR-Tools stop order
    risks = re.search(r"^models: (\d+) of (\d+) orders got a late risk from the model", run.stdout, re.M)
    model_lines = [line for line in run.stdout.splitlines() if line.startswith("models:")]
    assert risks and int(risks.group(1)) > 0, model_lines  # online inference ran in the worker
    kpis = re.search(r"^kpis: city \d{4}-\d\d-\d\d: (\d+) orders, fulfilment [\d.]+%, on time [\d.]+%",
                     run.stdout, re.M)
    assert kpis and int(kpis.group(1)) > 0, run.stdout[-2000:]  # the KPI stages caught up and Redis has the day
    stock = re.search(r"^stock: (\d+) SKU levels in (\d+) warehouses", run.stdout, re.M)
    assert stock and int(stock.group(1)) > 0 and int(stock.group(2)) > 0, run.stdout[-2000:]  # WMS movements folded
    doc_text = run.stdout.split("$ kuailv order ", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    doc = json.loads(doc_text)
    assert {"orderId", "status", "driverInfo", "eta", "items"} <= doc.keys()
    assert doc["items"] and {"name", "quantity", "unit"} <= doc["items"][0].keys()

    again = kuailv("order", doc["orderId"], timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["orderId"] == doc["orderId"]
    signed = kuailv("orders", "--status", "SIGNED", timeout=60)
    assert signed.returncode == 0 and signed.stdout.split()
