"""What the operator console shows of bots, also as JSON routes:

    GET /bots                              every configured bot's overview (operator)
    GET /bots/{bot_id}/overview            one bot's overview
    GET /bots/{bot_id}/conversation?limit= the latest messages as the bot received them,
                                           media still in flight, and the replies sent

An overview: the WhatsApp session state as this gateway last heard it from Node, the
phone number (a bot id that is a phone JID), staged media bytes against the quota,
messages today (UTC), media in flight and the webhook's state."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time
from typing import Any, Protocol

from aiohttp import web
from chatbot.wire.v1 import frames_pb2
from google.protobuf.message import DecodeError

from services.common.errors import InvalidInputError, NotFoundError
from services.common.store import (
    BotConfig,
    BotConfigStore,
    JobCollection,
    MediaJob,
    MediaJobStore,
    MessageStore,
    OutboxStore,
    OutgoingRecord,
    StoredMessage,
    WebhookDeadLetterStore,
)
from services.gateway import console_models as cm
from services.gateway.bot_api import shown_outgoing
from services.gateway.node_link import NodeLink
from services.gateway.openapi import BOT_ID, Param, Security, endpoint

# Messages today are counted up to this many per correspondent (shown as "at least").
TODAY_CAP = 1000
MAX_CONVERSATION = 200
OVERVIEW = ("overview",)
_PHONE_JID = re.compile(r"^(\d{7,15})(?::\d+)?@s\.whatsapp\.net$")


class OverviewStore(
    BotConfigStore, MessageStore, MediaJobStore, WebhookDeadLetterStore, OutboxStore, Protocol
):
    """Configurations, messages, jobs, webhook dead letters and the outbox (read only)."""


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def phone_of(bot_id: str) -> str | None:
    match = _PHONE_JID.match(bot_id)
    return f"+{match.group(1)}" if match else None


def refuse_unknown_query(request: web.Request, allowed: tuple[str, ...]) -> None:
    """A query parameter the route does not declare is the caller's mistake (a typo would
    otherwise be ignored silently): 400."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise InvalidInputError(
            f"unknown query parameter(s) {unknown[:5]!r}; this route takes {list(allowed)}"
        )


def kind_name(media_kind: str) -> str:
    """ "MEDIA_KIND_VOICE_NOTE" → "voice_note" (the console's and the JSON's spelling)."""
    return media_kind.removeprefix("MEDIA_KIND_").lower()


def _message(message: StoredMessage) -> dict[str, Any]:
    details: Any = None
    if message.details:
        try:
            details = json.loads(message.details)
        except ValueError:
            details = message.details
    return {
        "sequence": message.sequence,
        "correspondent_id": message.correspondent_id,
        "sender": message.sender,
        "source": message.source,
        "time": _time(message.originating_time),
        "kind": kind_name(message.media_kind) if message.media_kind else "text",
        "mime_type": message.mime_type,
        "content": message.content,
        "group_name": message.group_name,
        "details": details,
    }


def _in_flight(job: MediaJob, collection: JobCollection) -> dict[str, Any]:
    return {
        "media_processing_id": job.media_processing_id,
        "correspondent_id": job.correspondent_id,
        "kind": kind_name(job.media_kind),
        "mime_type": job.mime_type,
        "caption": job.caption,
        "time": _time(job.originating_time),
        # pending (a placeholder waiting for a worker) or processing; held while the
        # bot is stopped; completed until its placeholder is resolved.
        "state": "held" if collection is JobCollection.HOLDING else str(job.status),
        "attempts": job.attempts,
        "pool": job.pool,
    }


def _reply(record: OutgoingRecord) -> dict[str, Any]:
    shown = shown_outgoing(record)
    text = None
    if record.payload:
        try:
            text = frames_pb2.OutgoingMessage.FromString(record.payload).text or None
        except DecodeError:
            text = None
    # The text is kept only until the message is sent (the outbox drops the payload).
    return {**shown, "text": text}


class OverviewApi:
    def __init__(self, store: OverviewStore, link: NodeLink) -> None:
        self._store = store
        self._link = link

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/bots", self.list_bots)
        app.router.add_get("/bots/{bot_id}/overview", self.bot_overview)
        app.router.add_get("/bots/{bot_id}/conversation", self.bot_conversation)

    async def bots(self) -> list[dict[str, Any]]:
        return [await self.overview(bot_id) for bot_id in await self._store.configured_bots()]

    async def overview(self, bot_id: str) -> dict[str, Any]:
        config = await self._store.get_bot_config(bot_id)
        if config is None:
            raise NotFoundError(f"bot {bot_id!r} has no configuration")
        session = self._link.sessions.get(bot_id)
        active = await self._store.list_jobs(bot_id, JobCollection.ACTIVE)
        holding = await self._store.list_jobs(bot_id, JobCollection.HOLDING)
        staged = sum(j.file_size for j in active + holding if j.has_staged_file)
        midnight = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
        today = await self._store.recent_messages(
            bot_id, config.provider_name, TODAY_CAP, since=midnight
        )
        letters = await self._store.webhook_dead_letters(bot_id, 0, 100)
        return {
            "bot_id": bot_id,
            "session": {
                "state": (session.state if session else "UNKNOWN").removeprefix("SESSION_STATE_"),
                "detail": session.detail if session else None,
                "updated_at": session.updated_at if session else None,
            },
            "active": bot_id in await self._store.active_bots(),
            "phone": phone_of(bot_id),
            "quota": {
                "used_bytes": staged,
                "quota_bytes": int(config.media_storage_quota_gb * 1024**3),
            },
            "messages_today": sum(len(m) for m in today.values()),
            "media_in_flight": len(active),
            "media_held": len(holding),
            "webhook": _webhook(config, len(letters)),
        }

    async def conversation(self, bot_id: str, limit: int = 40) -> dict[str, Any]:
        if await self._store.get_bot_config(bot_id) is None:
            raise NotFoundError(f"bot {bot_id!r} has no configuration")
        last = await self._store.max_sequence(bot_id)
        messages = await self._store.messages_after(bot_id, max(0, last - limit), limit)
        flying = [
            _in_flight(job, collection)
            for collection in (JobCollection.ACTIVE, JobCollection.HOLDING)
            for job in await self._store.list_jobs(bot_id, collection)
        ]
        replies = await self._store.recent_outgoing(bot_id, min(limit, 50))
        return {
            "bot_id": bot_id,
            "messages": [_message(m) for m in messages],
            "in_flight": flying,
            "replies": [_reply(r) for r in replies],
        }

    @endpoint(
        summary="Every configured bot's overview (the console's bots page)",
        tags=OVERVIEW,
        security=Security.OPERATOR,
        responses={200: cm.BotList},
    )
    async def list_bots(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ())
        return web.json_response({"bots": await self.bots()})

    @endpoint(
        summary="One bot's session, quota use, messages today, media in flight, webhook",
        tags=OVERVIEW,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: cm.BotOverview},
        errors=(404,),
    )
    async def bot_overview(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ())
        return web.json_response(await self.overview(request.match_info["bot_id"]))

    @endpoint(
        summary="What the bot received lately, its media in flight and its replies",
        tags=OVERVIEW,
        security=Security.BOT,
        path=(BOT_ID,),
        query=(
            Param(
                "limit",
                "How many of the latest messages.",
                {"type": "integer", "minimum": 1, "maximum": MAX_CONVERSATION, "default": 40},
                required=False,
            ),
        ),
        responses={200: cm.Conversation},
        errors=(400, 404),
    )
    async def bot_conversation(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ("limit",))
        text = request.query.get("limit", "40")
        if not text.isdigit() or not 1 <= int(text) <= MAX_CONVERSATION:
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_CONVERSATION}")
        body = await self.conversation(request.match_info["bot_id"], int(text))
        return web.json_response(body)


def _webhook(config: BotConfig, dead_letters: int) -> dict[str, Any]:
    if config.webhook_url is None:
        return {"state": "off", "url": None, "dead_letters": dead_letters}
    state = "failing" if dead_letters else "ok"
    return {"state": state, "url": config.webhook_url, "dead_letters": dead_letters}
