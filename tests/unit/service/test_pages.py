"""The dashboard's static pages: served from the build, a clear 503 without one, the tile source from the settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from config.settings import load
from service.pages import mount_pages


def client(dist: Path, **env: str) -> TestClient:
    app = FastAPI()
    mount_pages(app, replace(load("test"), **env), dist)
    return TestClient(app)


def test_the_build_is_served_with_the_configured_tile_source(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>Kuailv</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    c = client(tmp_path, map_tile_url="https://tiles.example/{z}/{x}/{y}.png")
    assert c.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and "<title>Kuailv</title>" in page.text
    assert c.get("/ui/app.js").status_code == 200
    config = c.get("/ui/config.js")
    assert config.headers["content-type"].startswith("text/javascript")
    assert config.text == 'window.KUAILV_TILE_URL = "https://tiles.example/{z}/{x}/{y}.png";\n'
    assert client(tmp_path).get("/ui/config.js").text == "window.KUAILV_TILE_URL = null;\n"  # outlines only
    assert c.get("/ui/missing.js").status_code == 404


def test_without_a_build_the_page_says_which_step_is_missing(tmp_path: Path) -> None:
    answer = client(tmp_path).get("/ui/")
    assert answer.status_code == 503 and "make setup" in answer.text and "npm run build" in answer.text
