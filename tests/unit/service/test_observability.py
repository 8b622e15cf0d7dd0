"""Request metrics label by route template, and the JSON log configuration writes one object per line."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service import metrics
from service.observability import RequestMetrics, json_logging


def _count(route: str, status: str) -> float:
    return metrics.REGISTRY.get_sample_value("kuailv_api_requests_total",
                                             {"method": "GET", "route": route, "status": status}) or 0.0


def test_requests_are_counted_by_route_template_not_raw_path() -> None:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app.add_middleware(RequestMetrics)
    before = _count("/things/{thing_id}", "200")
    missing = _count("unmatched", "404")
    with TestClient(app) as client:
        assert client.get("/things/a").status_code == 200
        assert client.get("/things/b").status_code == 200
        assert client.get("/nowhere").status_code == 404
    assert _count("/things/{thing_id}", "200") == before + 2
    assert _count("unmatched", "404") == missing + 1
    assert metrics.REGISTRY.get_sample_value("kuailv_api_request_seconds_count",
                                             {"method": "GET", "route": "/things/{thing_id}"}) >= 2


def test_json_logs_are_one_object_per_line_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(json_logging("info"))
    try:
        logging.getLogger("service.test").info("delivered", extra={"delivery_id": "msg_1", "partition": 3})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "root": {"handlers": [], "level": "WARNING"}})
    record = json.loads(line)
    assert record["message"] == "delivered" and record["level"] == "INFO" and record["logger"] == "service.test"
    assert record["delivery_id"] == "msg_1" and record["partition"] == 3 and record["time"]
