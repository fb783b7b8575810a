"""Per-bot API tokens through the API: the operator issues (the secret is shown once),
lists and revokes them; the store keeps only a hash (api_auth.py checks them)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from services.common.errors import NotFoundError
from services.common.store import ApiToken, ApiTokenStore, BotConfigStore
from services.common.store._api_tokens import TOKEN_ID
from services.gateway import api_models as m
from services.gateway.api_auth import new_bot_token, operator_only
from services.gateway.openapi import BOT_ID, Param, Security, endpoint, read_body

TOKENS = ("tokens",)


class TokenApiStore(ApiTokenStore, BotConfigStore, Protocol):
    """The tokens, and the configurations a token's bot must have."""


def _shown(token: ApiToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "bot_id": token.bot_id,
        "label": token.label,
        "created_at": token.created_at.isoformat(),
    }


class TokenApi:
    def __init__(self, store: TokenApiStore) -> None:
        self._store = store

    @endpoint(
        summary="Issue a per-bot API token (its secret is shown once)",
        tags=TOKENS,
        security=Security.OPERATOR,
        path=(BOT_ID,),
        request=m.TokenBody,
        request_required=False,
        responses={201: m.TokenIssued},
        errors=(400, 404),
    )
    @operator_only
    async def issue(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        label = (await read_body(request, m.TokenBody)).label
        if await self._store.get_bot_config(bot_id) is None:
            raise NotFoundError(
                f"bot {bot_id!r} has no configuration; PUT /bots/{bot_id}/config first"
            )
        text, record = new_bot_token(bot_id, label)
        # 64 random bits of id: a clash is not expected, but never overwrite a token.
        while not await self._store.create_api_token(record):
            text, record = new_bot_token(bot_id, label)
        return web.json_response({**_shown(record), "token": text}, status=201)

    @endpoint(
        summary="The bot's tokens, without their secrets",
        tags=TOKENS,
        security=Security.OPERATOR,
        path=(BOT_ID,),
        responses={200: m.TokenList},
        errors=(400,),
    )
    @operator_only
    async def list(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        tokens = await self._store.list_api_tokens(bot_id)
        return web.json_response({"bot_id": bot_id, "tokens": [_shown(t) for t in tokens]})

    @endpoint(
        summary="Revoke a token",
        tags=TOKENS,
        security=Security.OPERATOR,
        path=(
            BOT_ID,
            Param(
                "token_id",
                "The token's id (not its secret).",
                {"type": "string", "pattern": f"^{TOKEN_ID.pattern}$"},
            ),
        ),
        responses={200: m.TokenRevoked},
        errors=(400, 404),
    )
    @operator_only
    async def revoke(self, request: web.Request) -> web.Response:
        bot_id, token_id = request.match_info["bot_id"], request.match_info["token_id"]
        if not await self._store.revoke_api_token(bot_id, token_id):
            raise NotFoundError(f"bot {bot_id!r} has no token {token_id!r}")
        return web.json_response({"bot_id": bot_id, "token_id": token_id, "revoked": True})
