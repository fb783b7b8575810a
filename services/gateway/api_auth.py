"""Who may call the gateway's HTTP API: the operator token, or a per-bot token.

The operator token (GATEWAY_API_TOKEN) may do everything. A per-bot token, issued by the
operator (POST /bots/{bot_id}/tokens) and stored only as a SHA-256 of its secret, may
read and steer its own bot and nothing else: the check reads the route's `{bot_id}` path
parameter, so a route added later is covered by declaring that parameter, and a route
without one (or marked `operator_only`) refuses every bot token. Every comparison of a
secret is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiohttp import web

from services.common.errors import InvalidInputError
from services.common.store import ApiToken

# A per-bot token reads `bot.<token_id>.<secret>` (the id is not secret; see _api_tokens.py).
BOT_TOKEN_PREFIX = "bot"
_OPERATOR_ONLY = "_gateway_operator_only"

_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])


class TokenStore(Protocol):
    async def get_api_token(self, token_id: str) -> ApiToken | None: ...


@dataclass(frozen=True)
class Principal:
    """The caller: the operator (`bot_id` None) or one bot's token."""

    bot_id: str | None = None
    token_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.bot_id is None


OPERATOR = Principal()


def operator_only(handler: _H) -> _H:
    """Marks a route that a per-bot token may not call even for its own bot (it changes
    what the operator decides: the configuration, the bot's tokens)."""
    setattr(handler, _OPERATOR_ONLY, True)
    return handler


def is_operator_only(handler: object) -> bool:
    return bool(getattr(handler, _OPERATOR_ONLY, False))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode(errors="replace")).hexdigest()


def new_bot_token(bot_id: str, label: str) -> tuple[str, ApiToken]:
    """A fresh token for `bot_id`: the text handed out once, and the record stored."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = ApiToken(token_id, bot_id, secret_digest(secret), datetime.now(UTC), label)
    return f"{BOT_TOKEN_PREFIX}.{token_id}.{secret}", record


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value if scheme == "Bearer" and value else None


class ApiAuth:
    """The one place every HTTP API route's caller is checked (GatewayApp's middleware)."""

    def __init__(self, operator_token: str, tokens: TokenStore) -> None:
        self._operator = operator_token.encode()
        self._tokens = tokens

    async def principal(self, token: str) -> Principal | None:
        if self._operator and hmac.compare_digest(token.encode(errors="replace"), self._operator):
            return OPERATOR
        prefix, _, rest = token.partition(".")
        token_id, _, secret = rest.partition(".")
        if prefix != BOT_TOKEN_PREFIX or len(token_id) != 16 or not secret:
            return None
        try:
            record = await self._tokens.get_api_token(token_id)
        except InvalidInputError:  # not an id at all
            return None
        if record is None or not hmac.compare_digest(
            secret_digest(secret).encode(), record.secret_sha256.encode()
        ):
            return None
        return Principal(bot_id=record.bot_id, token_id=record.token_id)

    async def token_valid(self, token_id: str, bot_id: str) -> bool:
        """Whether the bot token `token_id` still exists for `bot_id` (the console's
        sessions hold the id, not the secret: revoking the token ends them)."""
        try:
            record = await self._tokens.get_api_token(token_id)
        except InvalidInputError:
            return False
        return record is not None and record.bot_id == bot_id

    async def refusal(self, request: web.Request) -> web.Response | None:
        """None when the caller may call this route; else the 401 or 403 to answer."""
        token = _bearer(request)
        principal = None if token is None else await self.principal(token)
        if principal is None:
            return _error(401, "missing or wrong 'Authorization: Bearer <token>' header")
        if principal.is_operator:
            return None
        route_bot = request.match_info.get("bot_id")
        if route_bot is None or route_bot != principal.bot_id:
            return _error(403, f"this token may only read and steer bot {principal.bot_id!r}")
        if is_operator_only(request.match_info.handler):
            return _error(403, "only the operator token may call this route")
        return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
