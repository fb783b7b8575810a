"""The real pipeline the voice-note figures run through (bench/processors.py's end-to-end
figure and bench/mixed_load.py): queue_svc, media_svc serving only the Audio pool (its
engine warmed before the clock starts, as a running deployment's is) and the gateway,
on a fresh SQLite store on loopback; frames go over the gateway's WebSocket like Node's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AudioPipeline:
    gateway: str
    queue: str
    staging: Path


async def _definitions(db: Path, arrival_order: bool, chunk_seconds: float | None) -> None:
    """The built-in definitions, the Audio pool's claim order off (`arrival_order`) or
    its chunk length set, stored before media_svc reads them."""
    from services.common.routing import default_definitions  # noqa: PLC0415
    from services.common.store import StoreConfig, open_store  # noqa: PLC0415

    document = default_definitions().to_document()
    for pool in document["pools"]:
        if pool["name"] != "Audio":
            continue
        if arrival_order:
            pool["seconds_per_mib"] = 0
        if chunk_seconds is not None:
            pool["options"] = {**pool.get("options", {}), "chunk_seconds": chunk_seconds}
    store = await open_store(StoreConfig(sqlite_path=db))
    try:
        await store.put_processor_definitions(document)
    finally:
        await store.close()


@asynccontextmanager
async def audio_pipeline(
    work: Path, arrival_order: bool = False, chunk_seconds: float | None = None
) -> AsyncIterator[AudioPipeline]:
    """The three services on a fresh store in `work`; `chunk_seconds` (0: whole notes)
    overrides the Audio pool's default chunk length."""
    from tests.helpers.node_api import fake_node_api  # noqa: PLC0415
    from tests.helpers.processes import (  # noqa: PLC0415
        gateway_env,
        media_env,
        queue_env,
        start_service,
    )

    db, staging = work / "store.sqlite3", work / "staging"
    staging.mkdir()
    if arrival_order or chunk_seconds is not None:
        await _definitions(db, arrival_order, chunk_seconds)
    node_runner, node_url = await fake_node_api([], "node-api")
    services = []
    try:
        queue = await start_service("services.queue_svc", queue_env(db), work / "queue.log")
        services.append(queue)
        media_log = work / "media.log"
        services.append(
            await start_service(
                "services.media_svc",
                media_env(
                    db,
                    staging,
                    queue.address,
                    MEDIA_POOLS="Audio",
                    MEDIA_WARM_POOLS="true",
                    MEDIA_LEASE_SECONDS="30",
                ),
                media_log,
            )
        )
        gateway = await start_service(
            "services.gateway",
            gateway_env(
                db,
                queue.address,
                node_url,
                node_ws_token="ws",
                api_token="api",
                node_api_token="node-api",
            ),
            work / "gateway.log",
        )
        services.append(gateway)
        for _ in range(600):  # the Audio pool's engine loads before the clock starts
            if "engine loaded" in await asyncio.to_thread(media_log.read_text, errors="replace"):
                break
            await asyncio.sleep(0.1)
        yield AudioPipeline(gateway.address, queue.address, staging)
    finally:
        for service in reversed(services):
            await service.stop()
        await node_runner.cleanup()


def voice_frame(
    bot: str, chat: str, message_id: str, media_id: str, size: int, n: int
) -> dict[str, Any]:
    """Node's frame for a staged voice note."""
    from tests.helpers.clock import iso_now  # noqa: PLC0415

    return {
        "frameId": f"{message_id}-frame-{n}",
        "mediaMessage": {
            "header": {
                "botId": bot,
                "correspondentId": chat,
                "sender": chat,
                "providerMessageId": message_id,
                "originatingTime": iso_now(),
            },
            "mediaProcessingId": media_id,
            "mimeType": "audio/ogg; codecs=opus",
            "mediaKind": "MEDIA_KIND_VOICE_NOTE",
            "fileSize": str(size),
        },
    }


class BotSocket:
    """A started bot and Node's WebSocket to the gateway; `send` returns when the frame
    is ACCEPTED, with the perf_counter instant of the ack (the placeholder is queued)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def send(self, frame: dict[str, Any]) -> float:
        from chatbot.wire.v1 import frames_pb2 as w  # noqa: PLC0415

        from services.common.wire import parse_gateway_frame  # noqa: PLC0415

        await self._ws.send_str(json.dumps(frame))
        ack = parse_gateway_frame((await self._ws.receive(timeout=30)).data).ack
        accepted = time.perf_counter()
        if ack.status != w.ACK_STATUS_ACCEPTED:
            raise RuntimeError(f"voice note frame not accepted: {ack}")
        return accepted


@asynccontextmanager
async def bot_socket(gateway: str, bot: str) -> AsyncIterator[BotSocket]:
    import aiohttp  # noqa: PLC0415

    api = f"http://{gateway}"
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": "Bearer api"}
        async with http.put(f"{api}/bots/{bot}/config", json={}, headers=auth) as r:
            r.raise_for_status()
        async with http.post(f"{api}/bots/{bot}/start", json={}, headers=auth) as r:
            r.raise_for_status()
        async with http.ws_connect(f"{api}/ws", headers={"Authorization": "Bearer ws"}) as ws:
            yield BotSocket(ws)
