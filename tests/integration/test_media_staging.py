"""Node stages media through the gateway: PUT /internal/media/{bot_id}/{id} on the real
gateway (a subprocess on a SQLite store, MEDIA_STORE=filesystem): Node's token only, the
bot's quota from its counter in the store (507), the size cap (413) and a body cut off
mid-upload, each leaving nothing stored and nothing counted."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.store.sqlite import SqliteStore
from services.gateway.media_staging_api import GIB, QUOTA_EXCEEDED_STATUS
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import Service, gateway_env, start_service
from tests.helpers.waiting import wait_until

API_TOKEN, NODE_TOKEN = "operator-secret", "node-ws-secret"
BOT = "bot-a"
MAX_MEDIA_BYTES = 64 * 1024
QUOTA_BYTES = 5000


@dataclass
class Gateway:
    service: Service
    url: str
    http: aiohttp.ClientSession
    staging: Path
    db: Path

    async def put(
        self, media_id: str, body: bytes, token: str = NODE_TOKEN, bot_id: str = BOT
    ) -> tuple[int, dict[str, Any]]:
        async def chunks() -> AsyncIterator[bytes]:  # chunked, as Node sends it
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        async with self.http.put(
            f"{self.url}/internal/media/{bot_id}/{media_id}",
            data=chunks(),
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    async def used(self, bot_id: str = BOT) -> int:
        store = await SqliteStore.open(self.db)
        try:
            return await store.media_usage(bot_id)
        finally:
            await store.close()

    def objects(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.staging.iterdir()}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    db = tmp_path / "store.sqlite3"
    node_runner, node_url = await fake_node_api([], "node-api")
    env = gateway_env(
        db,
        "127.0.0.1:1",  # no queue_svc: staging never calls it
        node_url,
        node_ws_token=NODE_TOKEN,
        api_token=API_TOKEN,
        node_api_token="node-api",
    )
    env["MAX_MEDIA_BYTES"] = str(MAX_MEDIA_BYTES)
    service = await start_service("services.gateway", env, tmp_path / "gateway.log")
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{service.address}"
            quota = {"media_storage_quota_gb": QUOTA_BYTES / GIB}
            async with http.put(
                f"{url}/bots/{BOT}/config",
                json=quota,
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as response:
                assert response.status == 200, await response.text()
            yield Gateway(service, url, http, tmp_path / "staging", db)
    finally:
        assert await service.stop() == 0, "the gateway did not stop cleanly"
        await node_runner.cleanup()


async def test_staged_bytes_are_stored_whole_and_counted_once_across_a_retry(
    gateway: Gateway,
) -> None:
    rng = random.Random(24)
    media_id = str(uuid.uuid4())
    first = rng.randbytes(3000)
    staged = {"media_processing_id": media_id, "size": 3000}
    assert await gateway.put(media_id, first) == (201, staged)
    assert gateway.objects() == {media_id: first}
    assert await gateway.used() == 3000
    # Node crashed before sending the frame and stages the same id again, other bytes.
    again = rng.randbytes(1200)
    status, _ = await gateway.put(media_id, again)
    assert status == 201
    assert gateway.objects() == {media_id: again}
    assert await gateway.used() == 1200


async def test_only_nodes_token_stages_media(gateway: Gateway) -> None:
    media_id = str(uuid.uuid4())
    for token in (API_TOKEN, "wrong"):
        status, body = await gateway.put(media_id, b"x" * 10, token=token)
        assert status == 401, body
    assert gateway.objects() == {}
    assert await gateway.used() == 0


async def test_a_bot_over_its_quota_is_refused_with_its_counter(gateway: Gateway) -> None:
    rng = random.Random(7)
    assert (await gateway.put(str(uuid.uuid4()), rng.randbytes(QUOTA_BYTES)))[0] == 201
    before = gateway.objects()
    refused = str(uuid.uuid4())
    status, body = await gateway.put(refused, rng.randbytes(100))
    assert status == QUOTA_EXCEEDED_STATUS
    assert (body["used_bytes"], body["quota_bytes"]) == (QUOTA_BYTES, QUOTA_BYTES)
    assert gateway.objects() == before
    assert await gateway.used() == QUOTA_BYTES
    # Another bot has its own counter (no config stored: no quota).
    assert (await gateway.put(str(uuid.uuid4()), b"z" * 10, bot_id="bot-b"))[0] == 201
    assert await gateway.used("bot-b") == 10


async def test_an_oversized_body_is_refused_and_changes_nothing(gateway: Gateway) -> None:
    media_id = str(uuid.uuid4())
    status, body = await gateway.put(media_id, b"o" * (MAX_MEDIA_BYTES + 1))
    assert (status, body["max_bytes"]) == (413, MAX_MEDIA_BYTES)
    # Declared up front: refused before a byte is read.
    async with gateway.http.put(
        f"{gateway.url}/internal/media/{BOT}/{media_id}",
        data=b"o" * (MAX_MEDIA_BYTES + 1),
        headers={"Authorization": f"Bearer {NODE_TOKEN}"},
    ) as response:
        assert response.status == 413
    assert gateway.objects() == {}
    assert await gateway.used() == 0


@pytest.mark.parametrize("bad", ["not-a-uuid", str(uuid.UUID(int=1, version=1)), "..%2F..%2Fetc"])
async def test_an_id_that_is_not_a_uuid4_is_refused(gateway: Gateway, bad: str) -> None:
    status, _ = await gateway.put(bad, b"x")
    assert status in (400, 404)
    assert gateway.objects() == {}


async def test_an_upload_cut_off_mid_body_leaves_nothing_stored_or_counted(
    gateway: Gateway,
) -> None:
    host, port = gateway.service.address.rsplit(":", 1)
    media_id = str(uuid.uuid4())
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"PUT /internal/media/{BOT}/{media_id} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {NODE_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"p" * 2048
    writer.write(head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    # The partial write is on disk while the body streams …
    await wait_until(lambda: any(p.name.endswith(".part") for p in gateway.staging.iterdir()), 10)
    writer.close()  # … and Node dies before the last chunk.
    await writer.wait_closed()
    await wait_until(lambda: not gateway.objects(), 10)
    assert await gateway.used() == 0
    # The id stages normally afterwards.
    assert (await gateway.put(media_id, b"ok"))[0] == 201
    assert await gateway.used() == 2
    reader.feed_eof()
