"""The gateway's HTTP surface: the Node WebSocket and the bot lifecycle API."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any, Protocol

import grpc
from aiohttp import WSMsgType, web
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import (
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
    classify,
)
from services.common.grpc_edge import error_for_status
from services.common.queue_shards import QueueShards
from services.common.store import BotConfig, BotConfigStore, MessageStore
from services.common.wire import encode_frame
from services.gateway.config import GatewayConfig
from services.gateway.frame_handler import FrameHandler
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_client import NodeClient
from services.gateway.node_link import NodeLink
from services.gateway.readiness import Readiness

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Frames handled concurrently per connection (they batch together); more wait.
MAX_IN_FLIGHT_FRAMES = 1024

_STATUS = {
    InvalidInputError: 400,
    NotFoundError: 404,
    PreconditionError: 409,
    UnavailableError: 503,
}


def _bearer_ok(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _shown(config: BotConfig) -> dict[str, Any]:
    """The configuration as the API shows it: the webhook secret is never echoed."""
    document = config.to_document()
    if "webhook_secret" in document:
        document["webhook_secret"] = "(set)"
    return document


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class GatewayStore(BotConfigStore, MessageStore, Protocol):
    """Bot configurations, and the last delivery sequence (a webhook's starting point)."""


class GatewayApp:
    """Builds the aiohttp application; every collaborator comes from the composition root."""

    def __init__(
        self,
        *,
        config: GatewayConfig,
        store: GatewayStore,
        queue: QueueShards,
        handler: FrameHandler,
        link: NodeLink,
        node: NodeClient,
        metrics: GatewayMetrics,
        readiness: Readiness,
    ) -> None:
        self._config = config
        self._store = store
        self._queue = queue
        self._handler = handler
        self._link = link
        self._node = node
        self._metrics = metrics
        self._readiness = readiness
        self._sockets: set[web.WebSocketResponse] = set()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=1 << 20)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.ready)
        app.router.add_put("/bots/{bot_id}/config", self.put_config)
        app.router.add_get("/bots/{bot_id}", self.bot_status)
        app.router.add_post("/bots/{bot_id}/start", self.start_bot)
        app.router.add_post("/bots/{bot_id}/stop", self.stop_bot)
        app.router.add_post("/bots/{bot_id}/messages", self.send_message)
        app.on_shutdown.append(self._close_sockets)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._config.insecure_no_auth or request.path in ("/healthz", "/readyz"):
            return await handler(request)
        token = self._config.node_ws_token if request.path == "/ws" else self._config.api_token
        if not _bearer_ok(request, token):
            return _error(401, "missing or wrong 'Authorization: Bearer <token>' header")
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except grpc.aio.AioRpcError as error:
            meaning = error_for_status(error.code(), error.details() or "")
            status = next((s for t, s in _STATUS.items() if isinstance(meaning, t)), 503)
            return _error(status, f"queue_svc {error.code().name}: {error.details()}")
        except web.HTTPException:
            raise
        except Exception as error:
            # The store may refuse what the request carried (an integer too large, …):
            # that is the caller's 400, not a 500 or a 503.
            classified = classify(error)
            if classified is None:
                raise
            status = next((s for t, s in _STATUS.items() if isinstance(classified, t)), 500)
            return _error(status, str(classified))

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_connections": self._link.connection_count})

    async def ready(self, request: web.Request) -> web.Response:
        problems = await self._readiness.problems()
        body = {"ready": not problems, "problems": problems}
        return web.json_response(body, status=503 if problems else 200)

    # --- the Node WebSocket -------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        # Read frames well beyond the wire limit so that an oversized one is answered
        # REJECTED by the parser instead of closing the connection.
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=self._config.ws_max_message_bytes)
        await ws.prepare(request)
        self._sockets.add(ws)
        self._link.connected(ws)
        self._metrics.node_connections.set(self._link.connection_count)
        send_lock = asyncio.Lock()
        slots = asyncio.Semaphore(MAX_IN_FLIGHT_FRAMES)
        tasks: set[asyncio.Task[None]] = set()

        async def answer(data: str | bytes) -> None:
            try:
                reply = await self._handler.handle(data, ws)
                if reply is not None and not ws.closed:
                    async with send_lock:
                        await ws.send_str(encode_frame(reply))
                    ack_status = w.AckStatus.Name(reply.ack.status)
                    self._metrics.frames_acked.labels(ack_status).inc()
            except (ConnectionError, RuntimeError) as error:
                # Node resends every unacknowledged frame after reconnecting.
                log.info("could not acknowledge a frame, connection gone: %r", error)
            finally:
                slots.release()

        log.info("Node connected from %s", request.remote)
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await slots.acquire()
                    # One task per frame lets concurrent text frames share a batch;
                    # tasks start in arrival order, which keeps text order per chat.
                    task = asyncio.create_task(answer(message.data))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif message.type == WSMsgType.ERROR:
                    log.warning("Node WebSocket error: %r", ws.exception())
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._link.disconnected(ws)
            self._sockets.discard(ws)
            self._metrics.node_connections.set(self._link.connection_count)
            log.info("Node disconnected from %s", request.remote)
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"gateway shutting down")

    # --- the bot lifecycle API ----------------------------------------------------

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise InvalidInputError("request body must be a JSON object")
        return body

    async def _config_of(self, bot_id: str) -> BotConfig:
        config = await self._store.get_bot_config(bot_id)
        if config is None:
            raise NotFoundError(
                f"bot {bot_id!r} has no configuration; PUT /bots/{bot_id}/config first"
            )
        return config

    async def put_config(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        body = await self._json_body(request)
        if body.get("bot_id", bot_id) != bot_id:
            raise InvalidInputError("bot_id in the body differs from the one in the path")
        config = BotConfig.from_document({**body, "bot_id": bot_id})
        if config.webhook_url is not None and config.webhook_since_sequence is None:
            # The webhook relay starts a bot it has no cursor for after this point (or
            # keeps the point set when the webhook was first configured).
            previous = await self._store.get_bot_config(bot_id)
            since = previous.webhook_since_sequence if previous is not None else None
            if since is None:
                since = await self._store.max_sequence(bot_id)
            config = replace(config, webhook_since_sequence=since)
        await self._store.put_bot_config(config)
        return web.json_response({"bot_id": bot_id, "config": _shown(config)})

    async def bot_status(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        config = await self._config_of(bot_id)
        session = self._link.sessions.get(bot_id)
        return web.json_response(
            {
                "bot_id": bot_id,
                "config": _shown(config),
                "session": asdict(session) if session else None,
                "node_connections": self._link.connection_count,
            }
        )

    async def start_bot(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        body = await self._json_body(request)
        force = body.get("forceReinit", False)
        if not isinstance(force, bool):
            raise InvalidInputError("forceReinit must be true or false")
        config = await self._config_of(bot_id)
        started = await self._queue.stub_for(bot_id).StartBot(
            q.StartBotRequest(bot_id=bot_id), timeout=self._config.rpc_timeout_seconds * 6
        )
        result: dict[str, Any] = {
            "bot_id": bot_id,
            "queue": {
                "started": started.started,
                "jobs_reactivated": started.jobs_reactivated,
                "placeholders_restored": started.placeholders_restored,
                "results_applied": started.results_applied,
            },
        }
        try:
            result["node"] = await self._node.initialize(config, force)
        except UnavailableError as error:
            # The queue side is ready; Node can be initialised again by repeating the call.
            result["node"] = {"error": str(error)}
            return web.json_response(result, status=502)
        return web.json_response(result)

    async def stop_bot(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        stopped = await self._queue.stub_for(bot_id).StopBot(
            q.StopBotRequest(bot_id=bot_id), timeout=self._config.rpc_timeout_seconds * 6
        )
        return web.json_response(
            {
                "bot_id": bot_id,
                "stopped": stopped.stopped,
                "messages_persisted": stopped.messages_persisted,
                "jobs_parked": stopped.jobs_parked,
            }
        )

    async def send_message(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        body = await self._json_body(request)
        correspondent_id, text = body.get("correspondent_id"), body.get("text")
        quoted = body.get("quoted_provider_message_id")
        if not isinstance(correspondent_id, str) or not correspondent_id:
            raise InvalidInputError("correspondent_id must be a non-empty string")
        if not isinstance(text, str) or not text:
            raise InvalidInputError("text must be a non-empty string")
        if quoted is not None and not isinstance(quoted, str):
            raise InvalidInputError("quoted_provider_message_id must be a string")
        reply = w.OutgoingMessage(bot_id=bot_id, correspondent_id=correspondent_id, text=text)
        if quoted:
            reply.quoted_provider_message_id = quoted
        ack = await self._link.send_reply(reply)
        if ack.status != w.ACK_STATUS_ACCEPTED:
            return _error(502, f"Node did not send the reply: {ack.reason or ack.status}")
        return web.json_response({"bot_id": bot_id, "status": "sent"})
