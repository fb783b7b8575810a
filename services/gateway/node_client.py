"""The Node server's session API, as the gateway uses it: initialise bots, read their
WhatsApp session and pairing state, ask for a pairing code."""

from __future__ import annotations

from typing import Any

import aiohttp

from services.common.errors import (
    ChatbotError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from services.common.store import BotConfig
from services.gateway.node_directory import NodeDirectory

# Node's answers that are the caller's business, as the gateway's own domain errors; any
# other refusal means Node cannot serve now.
_NODE_STATUS: dict[int, type[ChatbotError]] = {
    400: InvalidInputError,
    404: NotFoundError,
    409: PreconditionError,
}


def node_config(config: BotConfig) -> dict[str, Any]:
    """What a Node server needs of a bot's configuration (it never reads the database):
    sent in /initialize and listed to Node replicas that pick up bots themselves."""
    return {
        "media_storage_quota_gb": config.media_storage_quota_gb,
        "provider_name": config.provider_name,
        **config.message_settings(),
        # Node marks a message read once the gateway acknowledged it (default off).
        "read_receipts": config.extra.get("read_receipts", False) is True,
    }


class NodeClient:
    """Calls the Node server that holds (or will hold) the bot's session."""

    def __init__(
        self, session: aiohttp.ClientSession, directory: NodeDirectory, token: str
    ) -> None:
        self._session = session
        self._directory = directory
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def initialize(self, config: BotConfig, force_reinit: bool) -> dict[str, Any]:
        """POST /initialize; the quota travels here so Node never reads the database."""
        body = {"userId": config.bot_id, "config": node_config(config), "forceReinit": force_reinit}
        return await self._call(
            config.bot_id, "POST", "/initialize", body, what=f"/initialize for {config.bot_id!r}"
        )

    async def session(self, bot_id: str) -> dict[str, Any]:
        """The bot's WhatsApp session as Node holds it (state, whether a QR is pending)."""
        return await self._call(bot_id, "GET", f"/sessions/{bot_id}", None, what="the session")

    async def qr(self, bot_id: str) -> str:
        """The pending pairing QR code's text; PreconditionError when none is pending."""
        answer = await self._call(bot_id, "GET", f"/sessions/{bot_id}/qr", None, what="the QR code")
        return str(answer.get("qr", ""))

    async def pairing_code(self, bot_id: str, phone_number: str) -> str:
        """A pairing code for the bot's phone number (the alternative to the QR code)."""
        answer = await self._call(
            bot_id,
            "POST",
            f"/sessions/{bot_id}/pairing-code",
            {"phoneNumber": phone_number},
            what="a pairing code",
        )
        return str(answer.get("code", ""))

    async def _call(
        self, bot_id: str, method: str, path: str, body: dict[str, Any] | None, *, what: str
    ) -> dict[str, Any]:
        url = f"{await self._directory.url_for(bot_id)}{path}"
        try:
            async with self._session.request(
                method,
                url,
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as response:
                text = await response.text()
                try:
                    answer: dict[str, Any] = await response.json(content_type=None)
                except ValueError:
                    answer = {"raw": text[:300]}
                if response.status >= 400:
                    reason = str(answer.get("error", text[:300]))
                    error = _NODE_STATUS.get(response.status)
                    if error is not None:
                        raise error(reason)
                    raise UnavailableError(f"Node refused {what}: HTTP {response.status} {reason}")
                return answer
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UnavailableError(
                f"cannot reach the Node server at {url} ({error!r}); is it running?"
            ) from error
