"""The dashboard and role pages (``/ui/``): the static build of ``web/`` (``npm run build``, run by setup).

The pages hold no data of their own: every figure comes from this service's API with the viewer's
token, so a page can never show what the API would refuse. The files are public (no token: a
browser cannot send one for a page load); the token stays in the URL fragment and sessionStorage.
Nothing is loaded from a CDN: Leaflet, uPlot and the Beijing district outlines are bundled.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from config.settings import Settings

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

_NOT_BUILT = ("<!doctype html><meta charset=utf-8><title>Kuailv dashboard not built</title>"
              "<h1>The dashboard is not built</h1><p>Run <code>make setup</code> (it runs <code>npm ci</code> and "
              "<code>npm run build</code> in <code>web/</code>), then reload.</p>")


def page_config(settings: Settings) -> str:
    """``/ui/config.js``: what the pages take from the service's configuration (before the app starts)."""
    return f"window.KUAILV_TILE_URL = {json.dumps(settings.map_tile_url or None)};\n"


def mount_pages(app: FastAPI, settings: Settings, dist: Path = WEB_DIST) -> None:
    """``/`` -> ``/ui/``; ``/ui/config.js`` from the settings; ``/ui/`` serves ``dist`` (index.html for the
    directory), or a 503 page naming the missing build step."""
    router = APIRouter(include_in_schema=False)
    config_js = page_config(settings)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @router.get("/ui/config.js")
    def config() -> Response:
        return Response(config_js, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    if (dist / "index.html").is_file():
        app.include_router(router)
        app.mount("/ui", StaticFiles(directory=dist, html=True), name="ui")
        return

    @router.get("/ui/{rest:path}")
    def not_built(rest: str = "") -> HTMLResponse:
        return HTMLResponse(_NOT_BUILT, status_code=503)

    app.include_router(router)
