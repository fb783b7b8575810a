"""Operators' handling of webhook dead letters (messages the relay gave up on):

    GET    /bots/{bot_id}/webhook/dead-letters?after=<sequence>&limit=<n>
    POST   /bots/{bot_id}/webhook/dead-letters/{sequence}/retry
    DELETE /bots/{bot_id}/webhook/dead-letters/{sequence}

A retry posts the stored body now, through the same signed, SSRF-guarded poster the relay
uses (same idempotency key, the next attempt number); on a 2xx the dead letter is deleted
and a reply in the answer is sent to the correspondent like any other reply; otherwise
the dead letter keeps the new answer and the call answers 502. A delete skips it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from services.common.errors import ChatbotError, InvalidInputError, NotFoundError
from services.common.outbound_http import OutboundClient, OutboundPolicy
from services.common.store import (
    BotConfigStore,
    OutgoingRecord,
    WebhookDeadLetter,
    WebhookDeadLetterStore,
    bounded_reason,
)
from services.gateway import api_models as m
from services.gateway.openapi import BOT_ID, Param, Security, endpoint
from services.gateway.outgoing_request import OutgoingRequest
from services.relay.payload import reply_of
from services.relay.webhook_post import WebhookPoster

MAX_PAGE = 500
WEBHOOK = ("webhook dead letters",)
SEQUENCE = Param(
    "sequence",
    "The message's delivery sequence.",
    {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
)


class WebhookApiStore(BotConfigStore, WebhookDeadLetterStore, Protocol):
    """Bots' webhook settings and their dead letters."""


def _time(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(letter: WebhookDeadLetter) -> dict[str, Any]:
    return {
        "sequence": letter.sequence,
        "idempotency_key": letter.idempotency_key,
        "correspondent_id": letter.correspondent_id,
        "attempts": letter.attempts,
        "outcome": letter.outcome,
        "status": letter.status,
        "reason": letter.reason,
        "first_attempt_at": _time(letter.first_attempt_at),
        "last_attempt_at": _time(letter.last_attempt_at),
        "dead_lettered_at": _time(letter.dead_lettered_at),
        # The webhook body as it was (and will be) posted.
        "payload": json.loads(letter.body),
    }


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _sequence(request: web.Request) -> int:
    text = request.match_info["sequence"]
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"sequence must be an integer >= 1, got {text!r}")
    return int(text)


# BotApi.enqueue: the one way into the outbox.
ReplySink = Callable[
    [str, dict[str, Any], str | None],
    Awaitable[tuple[OutgoingRecord, OutgoingRequest, bool]],
]


class WebhookApi:
    def __init__(
        self,
        *,
        store: WebhookApiStore,
        replies: ReplySink,
        outbound: OutboundPolicy,
        timeout_seconds: float,
        max_response_bytes: int,
    ) -> None:
        self._store = store
        self._replies = replies
        self._outbound = outbound
        self._timeout = timeout_seconds
        self._cap = max_response_bytes
        self._client: OutboundClient | None = None

    def add_routes(self, app: web.Application) -> None:
        base = "/bots/{bot_id}/webhook/dead-letters"
        app.router.add_get(base, self.list_dead_letters)
        app.router.add_post(base + "/{sequence}/retry", self.retry_dead_letter)
        app.router.add_delete(base + "/{sequence}", self.skip_dead_letter)
        app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        if self._client is not None:
            await self._client.close()

    def _poster(self) -> WebhookPoster:
        # Made on first use: the session belongs to the running loop.
        if self._client is None:
            self._client = OutboundClient(self._outbound)
        return WebhookPoster(
            self._client, timeout_seconds=self._timeout, max_response_bytes=self._cap
        )

    @endpoint(
        summary="Webhook deliveries the relay gave up on, oldest first",
        tags=WEBHOOK,
        security=Security.BOT,
        path=(BOT_ID,),
        query=(
            Param(
                "after",
                "Only sequences after this one (the previous page's next_after).",
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0},
                required=False,
            ),
            Param(
                "limit",
                "Page size.",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
                required=False,
            ),
        ),
        responses={200: m.DeadLetterPage},
        errors=(400,),
    )
    async def list_dead_letters(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        after = _int_query(request, "after", 0, 0, 2**63 - 1)
        limit = _int_query(request, "limit", 100, 1, MAX_PAGE)
        letters = await self._store.webhook_dead_letters(bot_id, after, limit)
        return web.json_response(
            {
                "bot_id": bot_id,
                "dead_letters": [shown(letter) for letter in letters],
                # Pass as `after` for the next page; null on the last one.
                "next_after": letters[-1].sequence if len(letters) == limit else None,
            }
        )

    async def _letter(self, bot_id: str, sequence: int) -> WebhookDeadLetter:
        letter = await self._store.get_webhook_dead_letter(bot_id, sequence)
        if letter is None:
            raise NotFoundError(f"bot {bot_id!r} has no webhook dead letter {sequence}")
        return letter

    @endpoint(
        summary="Skip a dead letter: delete it without delivery",
        tags=WEBHOOK,
        security=Security.BOT,
        path=(BOT_ID, SEQUENCE),
        responses={200: m.Skipped},
        errors=(400, 404),
    )
    async def skip_dead_letter(self, request: web.Request) -> web.Response:
        bot_id, sequence = request.match_info["bot_id"], _sequence(request)
        return web.json_response(await self.skip(bot_id, sequence))

    async def skip(self, bot_id: str, sequence: int) -> dict[str, Any]:
        if not await self._store.delete_webhook_dead_letter(bot_id, sequence):
            raise NotFoundError(f"bot {bot_id!r} has no webhook dead letter {sequence}")
        return {"bot_id": bot_id, "sequence": sequence, "skipped": True}

    @endpoint(
        summary="Post a dead letter to the webhook again now",
        description="Signed and SSRF-guarded like the relay's deliveries. Delivered: the"
        " dead letter is deleted and a reply in the answer is sent (200); still failing:"
        " it is kept with the new answer (502).",
        tags=WEBHOOK,
        security=Security.BOT,
        path=(BOT_ID, SEQUENCE),
        responses={200: m.RetryResult, 502: m.RetryResult},
        errors=(400, 404),
    )
    async def retry_dead_letter(self, request: web.Request) -> web.Response:
        bot_id, sequence = request.match_info["bot_id"], _sequence(request)
        answer = await self.retry(bot_id, sequence)
        return web.json_response(answer, status=200 if answer["delivered"] else 502)

    async def retry(self, bot_id: str, sequence: int) -> dict[str, Any]:
        """Posts the dead letter now (the API's retry, the console's requeue)."""
        letter = await self._letter(bot_id, sequence)
        config = await self._store.get_bot_config(bot_id)
        if config is None or config.webhook_url is None or config.webhook_secret is None:
            raise InvalidInputError(f"bot {bot_id!r} has no webhook configured; set one first")
        attempted_at = datetime.now(UTC)
        result = await self._poster().post(
            config.webhook_url,
            config.webhook_secret,
            letter.idempotency_key,
            letter.body.encode(),
            letter.attempts + 1,
        )
        answer: dict[str, Any] = {
            "bot_id": bot_id,
            "sequence": sequence,
            "delivered": result.delivered,
            "outcome": result.outcome,
            "status": result.status,
        }
        if not result.delivered:
            await self._store.put_webhook_dead_letter(
                replace(
                    letter,
                    attempts=letter.attempts + 1,
                    outcome=result.outcome,
                    status=result.status,
                    reason=bounded_reason(result.reason),
                    last_attempt_at=attempted_at,
                )
            )
            return {**answer, "reason": result.reason}
        await self._store.delete_webhook_dead_letter(bot_id, sequence)
        answer["reply"] = await self._send_reply(letter, result.payload)
        return answer

    async def _send_reply(self, letter: WebhookDeadLetter, payload: bytes) -> str:
        """What became of a reply in the answer: none, sent, or why it was not sent (the
        message itself is delivered either way)."""
        try:
            reply = reply_of(payload)
        except ValueError as error:
            return f"invalid: {error}"
        if reply is None:
            return "none"
        # The relay's own key for this message's reply: had the relay delivered it, its
        # reply would have gone out under the same key, so nothing is ever sent twice.
        key = f"reply:{letter.sequence}"
        try:
            record, wanted, _inserted = await self._replies(
                letter.bot_id, reply.request(letter.correspondent_id), key
            )
        except ChatbotError as error:
            return f"not sent: {error}"
        if record.request_hash != wanted.request_hash:
            return "not sent: an earlier reply to this message stands"
        return "accepted"
