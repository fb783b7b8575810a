"""Pairing a bot's WhatsApp account through the gateway: its session state, the pending
QR code (as text and as a PNG to show or scan from a screen) and a pairing code for a
phone number. Node holds the sessions; the gateway asks the Node server it knows
(`NODE_API_URL`), so an operator never needs a terminal on the machine running it."""

from __future__ import annotations

import io
import re
from typing import Any

import segno
from aiohttp import web

from services.common.errors import InvalidInputError, PreconditionError
from services.gateway import api_models as m
from services.gateway.node_client import NodeClient
from services.gateway.openapi import Binary, Param, Security, endpoint, read_body

# Bot ids as the lifecycle API accepts them; checked before anything reaches Node's URLs.
_BOT_ID = re.compile(r"^[0-9A-Za-z@._:+-]{1,128}$")
# E.164 without the plus: a country code that does not start with 0, 7 to 15 digits.
_PHONE = re.compile(r"^[1-9][0-9]{6,14}$")


PAIRING = ("pairing",)
BOT_ID = Param("bot_id", "The bot's id.", {"type": "string", "pattern": _BOT_ID.pattern})
# Node answers these when the session is not in the state asked for (409) or cannot be
# reached (503); a bot id Node refuses is 400.
_NODE_ERRORS = (400, 404, 409, 503)


def _bot_id(request: web.Request) -> str:
    bot_id = request.match_info["bot_id"]
    if not _BOT_ID.match(bot_id):
        raise InvalidInputError(f"bot id {bot_id[:140]!r} is not valid")
    return bot_id


class PairingApi:
    def __init__(self, node: NodeClient) -> None:
        self._node = node

    @endpoint(
        summary="The bot's WhatsApp session as its Node server holds it",
        tags=PAIRING,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: m.NodeSession},
        errors=_NODE_ERRORS,
    )
    async def session(self, request: web.Request) -> web.Response:
        """GET /bots/{id}/session: the WhatsApp session as Node holds it."""
        return web.json_response(await self._node.session(_bot_id(request)))

    @endpoint(
        summary="Pairing state and, while a scan is awaited, the QR code's text",
        tags=PAIRING,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: m.PairingState},
        errors=_NODE_ERRORS,
    )
    async def pairing(self, request: web.Request) -> web.Response:
        """GET /bots/{id}/pairing: the state and, while pairing, the QR code's text."""
        bot_id = _bot_id(request)
        session = await self._node.session(bot_id)
        qr: str | None = None
        if session.get("qrAvailable"):
            try:
                qr = await self._node.qr(bot_id)
            except PreconditionError:
                # Scanned (or the session closed) between the two reads: the state is
                # what it is now, with no code to show.
                session = await self._node.session(bot_id)
        body: dict[str, Any] = {"bot_id": bot_id, "state": session.get("state"), "qr": qr}
        if qr is not None:
            body["qr_png"] = f"/bots/{bot_id}/pairing/qr.png"
        return web.json_response(body)

    @endpoint(
        summary="The pending QR code as a PNG (409 when no scan is awaited)",
        tags=PAIRING,
        security=Security.BOT,
        path=(BOT_ID,),
        responses={200: Binary("image/png", "The QR code; WhatsApp rotates it: fetch again.")},
        errors=_NODE_ERRORS,
    )
    async def qr_png(self, request: web.Request) -> web.Response:
        """GET /bots/{id}/pairing/qr.png: the pending QR code as an image; 409 when the
        session is not waiting for a scan (WhatsApp rotates codes: fetch it again)."""
        qr = await self._node.qr(_bot_id(request))
        image = io.BytesIO()
        segno.make(qr, error="l").save(image, kind="png", scale=8, border=4)
        return web.Response(
            body=image.getvalue(),
            content_type="image/png",
            headers={"Cache-Control": "no-store"},
        )

    @endpoint(
        summary="A pairing code to type on the phone instead of scanning",
        tags=PAIRING,
        security=Security.BOT,
        path=(BOT_ID,),
        request=m.PairingCodeBody,
        responses={200: m.PairingCode},
        errors=_NODE_ERRORS,
    )
    async def pairing_code(self, request: web.Request) -> web.Response:
        """POST /bots/{id}/pairing/code {"phone_number": "4915112345678"}: a code to type
        on the phone instead of scanning (Linked devices → Link with phone number)."""
        bot_id = _bot_id(request)
        phone = (await read_body(request, m.PairingCodeBody)).phone_number
        digits = re.sub(r"[\s+()-]", "", phone)
        if not _PHONE.match(digits):
            raise InvalidInputError(
                "phone_number must be the bot's number in international format, "
                'e.g. {"phone_number": "4915112345678"}'
            )
        code = await self._node.pairing_code(bot_id, digits)
        return web.json_response({"bot_id": bot_id, "code": code})
