"""``/ws``: the WebSocket endpoint of the live feed (protocol in ``service.live``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from config.settings import Settings
from service import orders
from service.auth import AuthError, Principal, verify
from service.live import POSITION_EVERY_S, Client, Live, dumps
from service.live_changes import BadSubscription, Interest, decode_cursor, encode_cursor, parse_subscribe
from service.policy import Access, order_access, subscription_access

log = logging.getLogger(__name__)
SUBSCRIBE_WITHIN_S = 30.0


class Refused(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _owners_from_redis(settings: Settings, order_id: str) -> tuple[str | None, str | None, str | None] | None:
    from streams import queries

    doc = queries.order_document(settings, order_id)
    if doc is None:
        return None
    return doc["customerId"], (doc.get("driverInfo") or {}).get("driverId"), doc["warehouseId"]


def live_router(settings: Settings, codec: Any) -> APIRouter:
    live = Live(settings, codec, lambda oid: _owners_from_redis(settings, oid))

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        live.stop()

    router = APIRouter(lifespan=lifespan)

    async def authorise(who: Principal, interests: list[Interest]) -> None:
        for i in interests:
            if i.kind == "order":
                doc = await run_in_threadpool(orders.order, settings, codec, i.key)
                if doc is None:
                    raise Refused(4404, f"order {i.key} is neither in Redis nor on the log")
                access: Access = order_access(who, doc)
                live.feed.owners.learn(doc["orderId"], (doc.get("customerId"),
                                                        (doc.get("driverInfo") or {}).get("driverId"),
                                                        doc.get("warehouseId")))
            else:
                access = subscription_access(who, i.kind, i.key)
            if not access.allowed:
                raise Refused(4403, access.reason)

    async def handshake(ws: WebSocket, token: str | None) -> tuple[Principal, list[Interest], Any]:
        header = ws.headers.get("authorization") or (f"Bearer {token}" if token else None)
        try:
            who = verify(settings.api_secret, header)
        except AuthError as exc:
            raise Refused(4401, str(exc)) from exc
        try:
            message = orjson.loads(await asyncio.wait_for(ws.receive_text(), SUBSCRIBE_WITHIN_S))
            if not isinstance(message, dict):
                raise BadSubscription("send a JSON object")
            interests, resume = parse_subscribe(message)
            position = decode_cursor(resume) if resume else None
        except (BadSubscription, orjson.JSONDecodeError) as exc:
            raise Refused(4400, str(exc)) from exc
        except TimeoutError as exc:
            raise Refused(4400, f"no subscribe message within {SUBSCRIBE_WITHIN_S:.0f} s") from exc
        await authorise(who, interests)
        try:
            await live.ensure_started()
        except Exception as exc:
            log.exception("live feed could not start")
            raise Refused(1011, f"the live feed is unavailable: {exc}") from exc
        return who, interests, position

    @router.websocket("/ws")
    async def feed(ws: WebSocket, token: str | None = None) -> None:
        await ws.accept()
        try:
            who, interests, resume = await handshake(ws, token)
        except Refused as refused:
            with contextlib.suppress(Exception):
                await ws.send_text(dumps({"type": "error", "detail": refused.detail}))
                await ws.close(code=refused.code, reason=refused.detail[:120])
            return
        except WebSocketDisconnect:
            return
        client = Client(who, interests)
        live_from = live.hub.add(client)
        try:
            await serve_client(ws, client, resume, live_from)
        except WebSocketDisconnect:
            pass
        finally:
            live.hub.remove(client)

    async def serve_client(ws: WebSocket, client: Client, resume: Any, live_from: dict[str, list[int]]) -> None:
        missed: list[str] = []
        if resume is not None:
            frames = await live.catch_up(client, resume, live_from)
            if frames is None:
                await ws.send_text(dumps({"type": "error", "detail": "too far behind to resume: read the orders "
                                          "over REST and subscribe again without resume"}))
                await ws.close(code=4410, reason="resume position too old")
                return
            missed = frames
        await ws.send_text(dumps({"type": "subscribed", "resumed": len(missed),
                                  "cursor": encode_cursor(live_from if resume is None else resume)}))
        for frame in missed:
            await ws.send_text(frame)
        if missed:  # the gap is closed: the client's cursor moves to where its live feed starts
            await ws.send_text(dumps({"type": "position", "cursor": encode_cursor(live_from)}))
        closed = asyncio.ensure_future(_until_closed(ws))
        try:
            await _send_live(ws, client, closed)
        finally:
            closed.cancel()

    async def _send_live(ws: WebSocket, client: Client, closed: asyncio.Future[None]) -> None:
        last_position = ""
        while not closed.done():
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, closed}, timeout=POSITION_EVERY_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if closed.done():
                    return
                cursor = live.hub.cursor()  # queue empty: everything before this position was sent
                if cursor != last_position:
                    last_position = cursor
                    await ws.send_text(dumps({"type": "position", "cursor": cursor}))
                continue
            frame = getter.result()
            if frame is None:  # it fell QUEUE_LIMIT behind: close; it resumes from its last cursor
                await ws.close(code=1013, reason="too slow: reconnect with your last cursor")
                return
            await ws.send_text(frame)

    return router


async def _until_closed(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
