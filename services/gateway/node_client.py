"""The Node server's session API, as the gateway uses it to initialise bots."""

from __future__ import annotations

from typing import Any

import aiohttp

from services.common.errors import UnavailableError
from services.common.store import BotConfig


class NodeClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def initialize(self, config: BotConfig, force_reinit: bool) -> dict[str, Any]:
        """POST /initialize; the quota travels here so Node never reads the database."""
        body = {
            "userId": config.bot_id,
            "config": {
                "media_storage_quota_gb": config.media_storage_quota_gb,
                "provider_name": config.provider_name,
                # Node marks a message read once the gateway acknowledged it (default off).
                "read_receipts": config.extra.get("read_receipts", False) is True,
            },
            "forceReinit": force_reinit,
        }
        url = f"{self._base_url}/initialize"
        try:
            async with self._session.post(
                url, json=body, headers=self._headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise UnavailableError(
                        f"Node refused /initialize for {config.bot_id!r}: "
                        f"HTTP {response.status} {text[:300]}"
                    )
                try:
                    answer: dict[str, Any] = await response.json(content_type=None)
                except ValueError:
                    answer = {"raw": text[:300]}
                return answer
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UnavailableError(
                f"cannot reach the Node server at {url} ({error!r}); is it running?"
            ) from error
