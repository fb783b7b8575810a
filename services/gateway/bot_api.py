"""The bot lifecycle API: configuration, status, start, stop, and replies sent to Node."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Protocol

from aiohttp import web

from services.common.errors import (
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from services.common.outbound_http import OutboundPolicy, check_url
from services.common.store import (
    ApiTokenStore,
    BotConfig,
    BotConfigStore,
    DefinitionsStore,
    LeaseStore,
    MediaJobStore,
    MessageStore,
    NewOutgoing,
    OutboxStore,
    OutgoingRecord,
    WebhookDeadLetterStore,
    WhatsAppAuthStore,
)
from services.common.store._outbox_types import MAX_IDEMPOTENCY_KEY
from services.common.validation import validate_message
from services.gateway import api_models as m
from services.gateway.api_auth import operator_only
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_client import NodeClient
from services.gateway.node_link import NodeLink
from services.gateway.openapi import BOT_ID, Param, Security, endpoint, read_body
from services.gateway.outbox_delivery import OutboxDelivery
from services.gateway.outgoing_media import OutgoingMediaLoader
from services.gateway.outgoing_request import (
    IDEMPOTENCY_HEADER,
    OutgoingRequest,
    outgoing_message,
    parse_request,
)
from services.gateway.queue_lifecycle import QueueLifecycle

BOTS = ("bots",)


class GatewayStore(
    BotConfigStore,
    DefinitionsStore,
    MediaJobStore,
    MessageStore,
    WebhookDeadLetterStore,
    WhatsAppAuthStore,
    LeaseStore,
    ApiTokenStore,
    OutboxStore,
    Protocol,
):
    """Bot configurations, the last delivery sequence (a webhook's starting point), webhook
    dead letters, the per-bot API tokens, the outgoing-message outbox, and what the Node
    servers keep through the gateway (Baileys auth state, their leases); the media jobs
    and the processor definitions the console shows (read; failed jobs also deleted)."""


def shown_config(config: BotConfig) -> dict[str, Any]:
    """The configuration as the API shows it: the webhook secret is never echoed."""
    document = config.to_document()
    if "webhook_secret" in document:
        document["webhook_secret"] = "(set)"
    return document


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def shown_outgoing(record: OutgoingRecord) -> dict[str, Any]:
    return {
        "bot_id": record.bot_id,
        "idempotency_key": record.idempotency_key,
        "correspondent_id": record.correspondent_id,
        "type": record.kind.removeprefix("OUTGOING_KIND_").lower(),
        "status": str(record.status),
        "provider_message_id": record.provider_message_id,
        "reason": record.reason,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


class BotApi:
    def __init__(
        self,
        *,
        store: GatewayStore,
        lifecycle: QueueLifecycle,
        link: NodeLink,
        node: NodeClient,
        outbound: OutboundPolicy,
        delivery: OutboxDelivery,
        media: OutgoingMediaLoader,
        metrics: GatewayMetrics,
    ) -> None:
        self._outbound = outbound
        self._store = store
        self._lifecycle = lifecycle
        self._link = link
        self._node = node
        self._delivery = delivery
        self._media = media
        self._metrics = metrics

    async def _config_of(self, bot_id: str) -> BotConfig:
        config = await self._store.get_bot_config(bot_id)
        if config is None:
            raise NotFoundError(
                f"bot {bot_id!r} has no configuration; PUT /bots/{bot_id}/config first"
            )
        return config

    async def stored_config(self, bot_id: str) -> BotConfig | None:
        return await self._store.get_bot_config(bot_id)

    # The webhook URL and the media quota are the operator's to set, not the bot's.
    @endpoint(
        summary="Create or replace a bot's configuration",
        tags=BOTS,
        security=Security.OPERATOR,
        path=(BOT_ID,),
        request=m.BotConfigBody,
        request_required=False,
        responses={200: m.ConfigStored},
        errors=(400,),
    )
    @operator_only
    async def put_config(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        body = (await read_body(request, m.BotConfigBody)).model_dump(exclude_unset=True)
        config = await self.save_config(bot_id, body)
        return web.json_response({"bot_id": bot_id, "config": shown_config(config)})

    async def save_config(self, bot_id: str, body: dict[str, Any]) -> BotConfig:
        """Checks and stores a bot's configuration (PUT /bots/{id}/config, the console)."""
        if body.get("bot_id") not in (None, bot_id):
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
        return config

    @endpoint(
        summary="A bot's configuration and session state",
        tags=BOTS,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: m.BotStatus},
        errors=(404,),
    )
    async def bot_status(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        config = await self._config_of(bot_id)
        session = self._link.sessions.get(bot_id)
        return web.json_response(
            {
                "bot_id": bot_id,
                "config": shown_config(config),
                "session": asdict(session) if session else None,
                "node_connections": self._link.connection_count,
            }
        )

    @endpoint(
        summary="Start a bot: its queues, then its WhatsApp session on a Node server",
        tags=BOTS,
        security=Security.BOT,
        path=(BOT_ID,),
        request=m.StartBody,
        request_required=False,
        responses={200: m.Started, 502: m.Started},
        errors=(400, 404, 503),
    )
    async def start_bot(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        force = (await read_body(request, m.StartBody)).forceReinit
        result, status = await self.start(bot_id, force)
        return web.json_response(result, status=status)

    async def start(self, bot_id: str, force: bool) -> tuple[dict[str, Any], int]:
        """Starts the bot's queue, then its Node session (POST /bots/{id}/start, the
        console); the HTTP status is 502 when Node could not be initialised."""
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
            return result, 502
        return result, 200

    @endpoint(
        summary="Stop a bot: persist its queues, park its media jobs",
        tags=BOTS,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: m.Stopped},
        errors=(400, 503),
    )
    async def stop_bot(self, request: web.Request) -> web.Response:
        return web.json_response(await self.stop(request.match_info["bot_id"]))

    async def stop(self, bot_id: str) -> dict[str, Any]:
        stopped = await self._lifecycle.stop_bot(bot_id)
        return {
            "bot_id": bot_id,
            "stopped": stopped.stopped,
            "messages_persisted": stopped.messages_persisted,
            "jobs_parked": stopped.jobs_parked,
        }

    def _status_url(self, request: web.Request, bot_id: str, key: str) -> str:
        return str(request.app.router["outgoing_status"].url_for(bot_id=bot_id, key=key))

    def _answer(
        self, request: web.Request, record: OutgoingRecord, wanted: OutgoingRequest, new: bool
    ) -> web.Response:
        if record.request_hash != wanted.request_hash:
            self._metrics.outgoing.labels("conflict").inc()
            raise PreconditionError(
                f"idempotency key {wanted.idempotency_key!r} was already used for another"
                " message of this bot; use a new key for a new message"
            )
        self._metrics.outgoing.labels("accepted" if new else "repeated").inc()
        url = self._status_url(request, record.bot_id, record.idempotency_key)
        body = {**shown_outgoing(record), "status_url": url}
        return web.json_response(body, status=202 if new else 200, headers={"Location": url})

    @endpoint(
        summary="Send a message (text, media, reaction, read receipt, typing)",
        description="Stored in the outbox and answered at once; any gateway replica"
        " delivers it. A retry with the same idempotency key is never sent twice.",
        tags=BOTS,
        security=Security.BOT,
        path=(BOT_ID,),
        headers=(
            Param(
                IDEMPOTENCY_HEADER,
                "The message's idempotency key (or the body's idempotency_key).",
                {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                required=False,
            ),
        ),
        request=m.OutgoingBody,
        responses={200: m.OutgoingAccepted, 202: m.OutgoingAccepted},
        location=(200, 202),
        errors=(400, 404, 409),
    )
    async def send_message(self, request: web.Request) -> web.Response:
        """Stores the message in the outbox and answers at once (202, or 200 with the
        stored record when the key was seen before); any gateway replica may deliver it."""
        bot_id = request.match_info["bot_id"]
        parsed = await read_body(request, m.OutgoingBody)
        # The fields as the caller sent them: the request hash tells a retry by them.
        body = parsed.model_dump(exclude_unset=True)
        record, wanted, inserted = await self.enqueue(
            bot_id, body, request.headers.get(IDEMPOTENCY_HEADER)
        )
        return self._answer(request, record, wanted, new=inserted)

    async def enqueue(
        self, bot_id: str, body: dict[str, Any], header_key: str | None
    ) -> tuple[OutgoingRecord, OutgoingRequest, bool]:
        """(the stored record, the request, whether this call stored it): a key seen
        before is answered from the store, before any media is fetched again. The one way
        into the outbox (the API, and the replies of retried webhook dead letters)."""
        wanted = parse_request(body, header_key, self._media.max_bytes)
        await self._config_of(bot_id)
        known = await self._store.get_outgoing(bot_id, wanted.idempotency_key)
        if known is not None:
            return known, wanted, False
        media = None if wanted.media is None else await self._media.load(wanted.media)
        message = outgoing_message(bot_id, wanted, media)
        problems = validate_message(message)
        if problems:
            raise InvalidInputError("; ".join(problems))
        record, inserted = await self._store.enqueue_outgoing(
            NewOutgoing(
                bot_id=bot_id,
                idempotency_key=wanted.idempotency_key,
                correspondent_id=wanted.correspondent_id,
                kind=wanted.kind_name,
                request_hash=wanted.request_hash,
                payload=message.SerializeToString(),
            )
        )
        if inserted:
            self._delivery.wake()
        return record, wanted, inserted

    @endpoint(
        summary="An outgoing message's status",
        tags=BOTS,
        security=Security.BOT,
        path=(BOT_ID, Param("key", "The idempotency key it was sent with.")),
        responses={200: m.OutgoingStatus},
        errors=(404,),
    )
    async def outgoing_status(self, request: web.Request) -> web.Response:
        bot_id, key = request.match_info["bot_id"], request.match_info["key"]
        record = await self._store.get_outgoing(bot_id, key)
        if record is None:
            raise NotFoundError(f"bot {bot_id!r} has no outgoing message with key {key!r}")
        return web.json_response(shown_outgoing(record))
