"""Media without a shared filesystem: Node (demo socket) → the gateway's staging route →
GridFS on SecantusDB → media_svc with its own scratch directory → the bot. No process
shares a directory with another: the gateway's and media_svc's MEDIA_STAGING_DIR and
Node's are distinct paths, and none of them is ever created. The bot's staged bytes are
counted in the store while the document waits and released after delivery; a bot with
no quota left gets the quota marker and nothing is stored for it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
from pymongo import AsyncMongoClient

from tests.helpers import secantus
from tests.helpers.node_server import start_node_server
from tests.helpers.processes import (
    Subscriber,
    free_port,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)
from tests.helpers.waiting import eventually

BOT, FULL_BOT = "gridfs-bot", "full-bot"
AUTH = {"Authorization": "Bearer api"}
PHRASE = "the invoice number is GRIDFS-4711"


async def test_media_flows_through_gridfs_with_no_shared_directory(tmp_path: Path) -> None:
    document = tmp_path / "script" / "note.txt"
    document.parent.mkdir()
    document.write_text(f"Hello from a plain text file.\n{PHRASE}\n")
    entry = {
        "type": "document",
        "from": "4917000000009@s.whatsapp.net",
        "file": str(document),
        "mimetype": "text/plain",
        "filename": "note.txt",
        "caption": "my note",
        "delay_ms": 0,
    }
    script = tmp_path / "script" / "script.json"
    script.write_text(
        json.dumps({"bots": {BOT: [{**entry, "id": "DOC1"}], FULL_BOT: [{**entry, "id": "DOC2"}]}})
    )
    server = secantus.start(tmp_path / "secantus", replica_set=True)
    database = f"gridfs_{uuid.uuid4().hex[:12]}"
    store = {
        "STORE_BACKEND": "mongodb",
        "MONGODB_URI": server.uri,
        "MONGODB_DATABASE": database,
        "MEDIA_STORE": "gridfs",
    }
    unused = [tmp_path / "gateway-staging", tmp_path / "media-staging", tmp_path / "node"]
    db = tmp_path / "unused.sqlite3"
    services = []
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
    try:
        queue = await start_service(
            "services.queue_svc", {**queue_env(db), **store}, tmp_path / "queue.log"
        )
        services.append(queue)
        media = await start_service(
            "services.media_svc",
            {
                **media_env(db, unused[1], queue.address),
                **store,
                "MEDIA_SCRATCH_DIR": str(tmp_path / "media-scratch"),
                # The document's pool and the one that writes the quota marker.
                "MEDIA_POOLS": "Document,Unsupported",
            },
            tmp_path / "media.log",
        )
        services.append(media)
        node_port = free_port()
        gateway = await start_service(
            "services.gateway",
            {
                **gateway_env(
                    db,
                    queue.address,
                    f"http://127.0.0.1:{node_port}",
                    node_ws_token="ws",
                    api_token="api",
                    node_api_token="node-api-token",
                ),
                **store,
                "MEDIA_STAGING_DIR": str(unused[0]),
            },
            tmp_path / "gateway.log",
        )
        services.append(gateway)
        subscriber = Subscriber(queue.address)
        await subscriber.start()
        node = await start_node_server(
            unused[2],
            script,
            gateway_ws_url=f"ws://{gateway.address}/ws",
            gateway_token="ws",
            log_path=tmp_path / "node.log",
            port=node_port,
        )
        try:
            api = f"http://{gateway.address}"
            async with aiohttp.ClientSession(headers=AUTH) as http:
                for bot, quota in ((BOT, 1.0), (FULL_BOT, 0.0)):
                    config = {"media_storage_quota_gb": quota}
                    async with http.put(f"{api}/bots/{bot}/config", json=config) as r:
                        assert r.status == 200, await r.text()
                    async with http.post(f"{api}/bots/{bot}/start", json={}) as r:
                        assert r.status == 200, await r.text()
            await subscriber.wait_for(2, within=180)
            [document_text] = subscriber.contents("DOC1")
            assert PHRASE in document_text and document_text.endswith("Caption: my note")
            [quota_marker] = subscriber.contents("DOC2")
            assert "media storage is full" in quota_marker, quota_marker
            db_ = client[database]

            async def delivered_and_released() -> bool:
                files = await db_["media.files"].count_documents({})
                chunks = await db_["media.chunks"].count_documents({})
                usage = {d["_id"]: d["staged_bytes"] async for d in db_["media_usage"].find()}
                return files == chunks == 0 and usage.get(BOT) == 0 and FULL_BOT not in usage

            # The object is deleted right after delivery, its bytes released.
            assert await eventually(delivered_and_released, within=15)
        finally:
            await node.stop()
            await subscriber.close()
        # No process made a staging directory: nothing on disk is shared.
        assert [p for p in unused[:2] if p.exists()] == []
        assert not (unused[2] / "staging").exists()
        assert list((tmp_path / "media-scratch").iterdir()) == []
    finally:
        for service in reversed(services):
            assert await service.stop() == 0, f"{service.name} did not stop cleanly"
        await client.close()
        server.stop()
