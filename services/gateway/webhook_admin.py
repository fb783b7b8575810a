"""The admin CLI's webhook dead-letter commands (services/media_svc/admin.py): calls of
the gateway's dead-letter API, rendered for a terminal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.common.errors import ChatbotError

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8090"


class AdminRequestError(ChatbotError):
    """The gateway refused the command, or cannot be reached."""


@dataclass(frozen=True)
class GatewayTarget:
    url: str
    token: str
    timeout_seconds: float


async def _call(target: GatewayTarget, method: str, path: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {target.token}"}
    timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(method, target.url.rstrip("/") + path, headers=headers) as response,
        ):
            text = await response.text()
            try:
                document: dict[str, Any] = json.loads(text)
            except ValueError:
                document = {"error": text[:500]}
            if response.status >= 400 and response.status != 502:
                raise AdminRequestError(
                    f"HTTP {response.status}: {document.get('error', document)}"
                )
            return document
    except (aiohttp.ClientError, TimeoutError) as error:
        raise AdminRequestError(
            f"cannot reach the gateway at {target.url} ({type(error).__name__}: {error});"
            " set --gateway or GATEWAY_URL"
        ) from None


def _line(letter: dict[str, Any]) -> str:
    return (
        f"{letter['sequence']:>8}  key={letter['idempotency_key']} "
        f"chat={letter['correspondent_id']} attempts={letter['attempts']} "
        f"outcome={letter['outcome']} status={letter['status']} "
        f"dead_lettered_at={letter['dead_lettered_at']} reason={letter['reason']}"
    )


async def list_dead_letters(target: GatewayTarget, bot_id: str, after: int, limit: int) -> str:
    document = await _call(
        target, "GET", f"/bots/{bot_id}/webhook/dead-letters?after={after}&limit={limit}"
    )
    letters = document["dead_letters"]
    if not letters:
        return f"no webhook dead letters for {bot_id}"
    lines = [_line(letter) for letter in letters]
    if document.get("next_after") is not None:
        lines.append(f"more: --after {document['next_after']}")
    return "\n".join(lines)


async def retry_dead_letter(target: GatewayTarget, bot_id: str, sequence: int) -> str:
    document = await _call(target, "POST", f"/bots/{bot_id}/webhook/dead-letters/{sequence}/retry")
    if document.get("delivered"):
        return (
            f"delivered {bot_id}:{sequence} (HTTP {document['status']}); reply: {document['reply']}"
        )
    raise AdminRequestError(
        f"{bot_id}:{sequence} still failing ({document.get('outcome')}, status"
        f" {document.get('status')}): {document.get('reason')}; kept as a dead letter"
    )


async def skip_dead_letter(target: GatewayTarget, bot_id: str, sequence: int) -> str:
    await _call(target, "DELETE", f"/bots/{bot_id}/webhook/dead-letters/{sequence}")
    return f"skipped {bot_id}:{sequence} (deleted, never delivered)"
