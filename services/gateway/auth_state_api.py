"""The store of Baileys auth state, as the Node servers reach it (they never hold a
database connection): read keys, write a change set, forget a bot. Only Node's own
credential (`GATEWAY_TOKEN`, the WebSocket's) opens these routes, never the API token:
whoever reads them could take over the bot's WhatsApp account."""

from __future__ import annotations

from aiohttp import web

from services.common.store import WhatsAppAuthStore
from services.gateway import api_models as m
from services.gateway.node_internal_api import INTERNAL
from services.gateway.openapi import BOT_ID, Security, endpoint, read_body


class AuthStateApi:
    def __init__(self, store: WhatsAppAuthStore) -> None:
        self._store = store

    @endpoint(
        summary="Read Baileys auth-state keys of one kind",
        tags=INTERNAL,
        security=Security.NODE,
        path=(BOT_ID,),
        request=m.AuthGetBody,
        responses={200: m.AuthValues},
        errors=(400,),
    )
    async def get_values(self, request: web.Request) -> web.Response:
        """POST /internal/whatsapp-auth/{bot_id}/get {"kind": "pre-key", "ids": [...]}
        → {"values": {id: value}} (missing keys left out)."""
        body = await read_body(request, m.AuthGetBody)
        values = await self._store.get_auth_values(
            request.match_info["bot_id"], body.kind, body.ids
        )
        return web.json_response({"values": values})

    @endpoint(
        summary="Write a change set of Baileys auth-state keys in one transaction",
        tags=INTERNAL,
        security=Security.NODE,
        path=(BOT_ID,),
        request=m.AuthSetBody,
        responses={200: m.AuthSaved},
        errors=(400,),
    )
    async def set_values(self, request: web.Request) -> web.Response:
        """POST /internal/whatsapp-auth/{bot_id}/set {"changes": {kind: {id: value|null}}}."""
        changes = (await read_body(request, m.AuthSetBody)).changes
        await self._store.set_auth_values(request.match_info["bot_id"], changes)
        return web.json_response({"ok": True})

    @endpoint(
        summary="Forget a bot's whole auth state (logout)",
        tags=INTERNAL,
        security=Security.NODE,
        path=(BOT_ID,),
        responses={200: m.AuthForgotten},
        errors=(400,),
    )
    async def forget(self, request: web.Request) -> web.Response:
        """DELETE /internal/whatsapp-auth/{bot_id}: logout, the whole state goes."""
        deleted = await self._store.forget_auth(request.match_info["bot_id"])
        return web.json_response({"deleted": deleted})
