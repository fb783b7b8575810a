"""The store of Baileys auth state, as the Node servers reach it (they never hold a
database connection): read keys, write a change set, forget a bot. Only Node's own
credential (`GATEWAY_TOKEN`, the WebSocket's) opens these routes, never the API token:
whoever reads them could take over the bot's WhatsApp account."""

from __future__ import annotations

from aiohttp import web

from services.common.errors import InvalidInputError
from services.common.store import WhatsAppAuthStore
from services.gateway.request_body import json_object

# Baileys asks for a few hundred keys at most at once (pre-keys after a pairing).
MAX_IDS = 5000



class AuthStateApi:
    def __init__(self, store: WhatsAppAuthStore) -> None:
        self._store = store

    async def get_values(self, request: web.Request) -> web.Response:
        """POST /internal/whatsapp-auth/{bot_id}/get {"kind": "pre-key", "ids": [...]}
        → {"values": {id: value}} (missing keys left out)."""
        body = await json_object(request)
        kind, ids = body.get("kind"), body.get("ids")
        if not isinstance(kind, str) or not isinstance(ids, list) or len(ids) > MAX_IDS:
            raise InvalidInputError(f'expected {{"kind": str, "ids": [str, …at most {MAX_IDS}]}}')
        if not all(isinstance(i, str) for i in ids):
            raise InvalidInputError("ids must be strings")
        values = await self._store.get_auth_values(request.match_info["bot_id"], kind, ids)
        return web.json_response({"values": values})

    async def set_values(self, request: web.Request) -> web.Response:
        """POST /internal/whatsapp-auth/{bot_id}/set {"changes": {kind: {id: value|null}}}."""
        changes = (await json_object(request)).get("changes")
        if not isinstance(changes, dict) or not all(
            isinstance(values, dict) for values in changes.values()
        ):
            raise InvalidInputError('expected {"changes": {kind: {id: value or null}}}')
        await self._store.set_auth_values(request.match_info["bot_id"], changes)
        return web.json_response({"ok": True})

    async def forget(self, request: web.Request) -> web.Response:
        """DELETE /internal/whatsapp-auth/{bot_id}: logout, the whole state goes."""
        deleted = await self._store.forget_auth(request.match_info["bot_id"])
        return web.json_response({"deleted": deleted})
