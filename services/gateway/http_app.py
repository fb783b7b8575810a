"""The gateway's HTTP surface: routes, authentication and the one mapping of domain
errors to HTTP statuses; the Node WebSocket is node_socket.py, the bot lifecycle API
bot_api.py (its queue_svc calls, with gRPC errors made domain errors, queue_lifecycle.py),
who may call which route api_auth.py (every route but /ws, /internal/*, /healthz, /readyz
and the API's document and docs, api_docs.py, passes through it: a route with a `{bot_id}`
path parameter is open to that bot's tokens). Each handler declares its route's contract
with `@endpoint` (openapi.py) and reads its body with the model it declares."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.common.errors import (
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
    classify,
)
from services.common.media_store import StagedMedia
from services.common.queue_shards import QueueShards
from services.gateway import api_models as m
from services.gateway.api_auth import ApiAuth
from services.gateway.api_docs import ApiDocs, is_docs_path
from services.gateway.api_tokens import TokenApi
from services.gateway.auth_state_api import AuthStateApi
from services.gateway.bot_api import BotApi, GatewayStore, error_response
from services.gateway.config import GatewayConfig
from services.gateway.console_events import ConsoleEvents
from services.gateway.console_pages import ConsolePages, templates
from services.gateway.console_session import ConsoleSessions
from services.gateway.frame_handler import FrameHandler
from services.gateway.media_api import MediaApi
from services.gateway.media_client import MediaClient
from services.gateway.media_rates import MediaRates
from services.gateway.media_staging_api import MediaStagingApi
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_client import NodeClient
from services.gateway.node_internal_api import NodeInternalApi
from services.gateway.node_link import NodeLink
from services.gateway.node_socket import NodeSocket
from services.gateway.openapi import Security, endpoint
from services.gateway.outbox_delivery import OutboxDelivery
from services.gateway.outgoing_media import OutgoingMediaLoader
from services.gateway.overview_api import OverviewApi
from services.gateway.pairing_api import PairingApi
from services.gateway.queue_lifecycle import QueueLifecycle
from services.gateway.readiness import Readiness
from services.gateway.webhook_api import WebhookApi

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {
    InvalidInputError: 400,
    NotFoundError: 404,
    PreconditionError: 409,
    UnavailableError: 503,
}


_HEALTH = ("health",)


def _bearer_ok(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


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
        delivery: OutboxDelivery,
        media: OutgoingMediaLoader,
        staged_media: StagedMedia,
    ) -> None:
        self._config = config
        self._link = link
        self._api_auth = ApiAuth(config.api_token, store)
        self._tokens = TokenApi(store)
        self._readiness = readiness
        self._socket = NodeSocket(
            handler=handler,
            link=link,
            metrics=metrics,
            max_message_bytes=config.ws_max_message_bytes,
        )
        self._api = BotApi(
            store=store,
            lifecycle=QueueLifecycle(queue, config.rpc_timeout_seconds),
            link=link,
            node=node,
            outbound=config.outbound,
            delivery=delivery,
            media=media,
            metrics=metrics,
        )
        self._webhooks = WebhookApi(
            store=store,
            replies=self._api.enqueue,
            outbound=config.outbound,
            timeout_seconds=config.webhook_timeout_seconds,
            max_response_bytes=config.webhook_max_response_bytes,
        )
        self._pairing = PairingApi(node)
        self._auth_state = AuthStateApi(store)
        self._node_internal = NodeInternalApi(store)
        # A status read: a replica that does not answer within the readiness timeout is
        # listed as a problem rather than holding the page.
        self._media_client = MediaClient(config.media_svc_addresses, config.ready_timeout_seconds)
        self._overview = OverviewApi(store, link)
        self._media = MediaApi(
            store,
            self._media_client,
            MediaRates(config.media_svc_metrics_urls, config.ready_timeout_seconds),
        )
        self._console = ConsolePages(
            sessions=ConsoleSessions(
                self._api_auth,
                config.api_token,
                config.console_session_seconds,
                config.console_secure_cookie,
            ),
            bots=self._api,
            overview=self._overview,
            media=self._media,
            webhooks=self._webhooks,
            dead_letters=store,
            node=node,
            env=templates(),
        )
        self._console_events = ConsoleEvents(self._console, config.console_refresh_seconds)
        self._docs = ApiDocs()
        self._media_staging = MediaStagingApi(staged_media, store, config.max_media_bytes)

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, self._auth],
            client_max_size=self._config.max_request_bytes,
        )
        app.router.add_get("/ws", self._socket.websocket)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.ready)
        app.router.add_put("/bots/{bot_id}/config", self._api.put_config)
        app.router.add_get("/bots/{bot_id}", self._api.bot_status)
        app.router.add_post("/bots/{bot_id}/start", self._api.start_bot)
        app.router.add_post("/bots/{bot_id}/stop", self._api.stop_bot)
        app.router.add_post("/bots/{bot_id}/messages", self._api.send_message)
        app.router.add_get("/bots/{bot_id}/session", self._pairing.session)
        app.router.add_get("/bots/{bot_id}/pairing", self._pairing.pairing)
        app.router.add_get("/bots/{bot_id}/pairing/qr.png", self._pairing.qr_png)
        app.router.add_post("/bots/{bot_id}/pairing/code", self._pairing.pairing_code)
        auth_state = "/internal/whatsapp-auth/{bot_id}"
        app.router.add_post(f"{auth_state}/get", self._auth_state.get_values)
        app.router.add_post(f"{auth_state}/set", self._auth_state.set_values)
        app.router.add_delete(auth_state, self._auth_state.forget)
        app.router.add_post("/internal/leases/acquire", self._node_internal.acquire)
        app.router.add_post("/internal/leases/release", self._node_internal.release)
        app.router.add_get("/internal/leases", self._node_internal.holders)
        app.router.add_get("/internal/bots", self._node_internal.active_bots)
        app.router.add_put(
            "/internal/media/{bot_id}/{media_processing_id}", self._media_staging.put
        )
        self._webhooks.add_routes(app)
        app.router.add_post("/bots/{bot_id}/tokens", self._tokens.issue)
        app.router.add_get("/bots/{bot_id}/tokens", self._tokens.list)
        app.router.add_delete("/bots/{bot_id}/tokens/{token_id}", self._tokens.revoke)
        app.router.add_get(
            # Keys may hold "/" (any printable characters are allowed).
            "/bots/{bot_id}/messages/{key:.+}",
            self._api.outgoing_status,
            name="outgoing_status",
        )
        self._overview.add_routes(app)
        self._media.add_routes(app)
        self._console_events.add_routes(app)
        self._console.add_routes(app)
        self._docs.add_routes(app)
        app.on_shutdown.append(self._socket.close_all)
        app.on_cleanup.append(self._close_media_client)
        return app

    async def _close_media_client(self, _: web.Application) -> None:
        await self._media_client.close()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Health probes, and the API's document and docs (no secret in them).
        if (
            self._config.insecure_no_auth
            or request.path in ("/healthz", "/readyz")
            or is_docs_path(request.path)
        ):
            return await handler(request)
        # The console's pages check their own signed session cookie (console_session.py);
        # its actions call the same code as the API routes below.
        if request.path == "/console" or request.path.startswith("/console/"):
            return await handler(request)
        # Node's own credential opens its WebSocket and what it keeps through the gateway
        # (Baileys auth state, its leases), and nothing else; no API token opens those.
        if request.path == "/ws" or request.path.startswith("/internal/"):
            if not _bearer_ok(request, self._config.node_ws_token):
                return error_response(
                    401, "missing or wrong 'Authorization: Bearer <token>' header"
                )
            return await handler(request)
        refusal = await self._api_auth.refusal(request)
        return refusal if refusal is not None else await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as error:
            # The store may refuse what the request carried (an integer too large, …):
            # that is the caller's 400, not a 500 or a 503.
            classified = classify(error)
            if classified is None:
                raise
            status = next((s for t, s in _STATUS.items() if isinstance(classified, t)), 500)
            return error_response(status, str(classified))

    @endpoint(summary="Liveness", tags=_HEALTH, security=Security.NONE, responses={200: m.Health})
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_connections": self._link.connection_count})

    @endpoint(
        summary="Readiness: the store, queue_svc shards and outbox delivery",
        tags=_HEALTH,
        security=Security.NONE,
        responses={200: m.Readiness, 503: m.Readiness},
    )
    async def ready(self, request: web.Request) -> web.Response:
        problems = await self._readiness.problems()
        body = {"ready": not problems, "problems": problems}
        return web.json_response(body, status=503 if problems else 200)
