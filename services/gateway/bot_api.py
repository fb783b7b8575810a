"""The bot lifecycle API: configuration, status, start, stop, and replies sent to Node."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any, Protocol

from aiohttp import web
from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import InvalidInputError, NotFoundError, UnavailableError
from services.common.outbound_http import OutboundPolicy, check_url
from services.common.store import (
    ApiTokenStore,
    BotConfig,
    BotConfigStore,
    LeaseStore,
    MessageStore,
    WebhookDeadLetterStore,
    WhatsAppAuthStore,
)
from services.gateway.api_auth import operator_only
from services.gateway.node_client import NodeClient
from services.gateway.node_link import NodeLink
from services.gateway.queue_lifecycle import QueueLifecycle


class GatewayStore(
    BotConfigStore,
    MessageStore,
    WebhookDeadLetterStore,
    WhatsAppAuthStore,
    LeaseStore,
    ApiTokenStore,
    Protocol,
):
    """Bot configurations, the last delivery sequence (a webhook's starting point), webhook
    dead letters, the per-bot API tokens, and what the Node servers keep through the
    gateway (Baileys auth state, their leases)."""


def _shown(config: BotConfig) -> dict[str, Any]:
    """The configuration as the API shows it: the webhook secret is never echoed."""
    document = config.to_document()
    if "webhook_secret" in document:
        document["webhook_secret"] = "(set)"
    return document


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class BotApi:
    def __init__(
        self,
        *,
        store: GatewayStore,
        lifecycle: QueueLifecycle,
        link: NodeLink,
        node: NodeClient,
        outbound: OutboundPolicy,
    ) -> None:
        self._outbound = outbound
        self._store = store
        self._lifecycle = lifecycle
        self._link = link
        self._node = node

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

    # The webhook URL and the media quota are the operator's to set, not the bot's.
    @operator_only
    async def put_config(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        body = await self._json_body(request)
        if body.get("bot_id", bot_id) != bot_id:
            raise InvalidInputError("bot_id in the body differs from the one in the path")
        config = BotConfig.from_document({**body, "bot_id": bot_id})
        if config.webhook_url is not None:
            # SSRF: refused now if it resolves to an internal address (the relay checks
            # again on every connect, as DNS answers change).
            await check_url(config.webhook_url, self._outbound)
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
        started = await self._lifecycle.start_bot(bot_id)
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
        stopped = await self._lifecycle.stop_bot(bot_id)
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
            return error_response(502, f"Node did not send the reply: {ack.reason or ack.status}")
        return web.json_response({"bot_id": bot_id, "status": "sent"})
