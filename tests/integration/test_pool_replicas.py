"""The production layout as local processes: 3 queue_svc shards and 3 media_svc replicas
split by pool filter as the Kubernetes roles are (speech = Audio,Video; vision =
Image,Sticker; documents = Document,Corrupt,Unsupported), one gateway, on one SQLite
file. 20 bots send mixed traffic (text, image, sticker, voice note, video, document,
unsupported file, corrupt media): every bot's messages come out of its own shard only;
every job is claimed once, by a replica that serves its pool; nothing is lost or
duplicated."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc
from chatbot.wire.v1 import frames_pb2 as w
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.sharding import shard_of
from services.common.store import JobCollection, StoreConfig, open_store
from services.common.wire import parse_gateway_frame
from tests.helpers.clock import iso_now
from tests.helpers.definitions import stub_definitions
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import (
    Service,
    Subscriber,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)
from tests.helpers.waiting import eventually

NODE_TOKEN, API_TOKEN, NODE_API_TOKEN = "node-secret", "api-secret", "node-api-secret"
CHAT = "4915112345678@s.whatsapp.net"
SHARDS = 3
BOTS = [f"fleet-{n}" for n in range(20)]
ROLES = {
    "speech": {"Audio", "Video"},
    "vision": {"Image", "Sticker"},
    "documents": {"Document", "Corrupt", "Unsupported"},
}
# (kind, MIME, the pool the default definitions route it to)
MEDIA = [
    ("MEDIA_KIND_IMAGE", "image/jpeg", "Image"),
    ("MEDIA_KIND_STICKER", "image/webp", "Sticker"),
    ("MEDIA_KIND_VOICE_NOTE", "audio/ogg", "Audio"),
    ("MEDIA_KIND_VIDEO", "video/mp4", "Video"),
    ("MEDIA_KIND_DOCUMENT", "application/pdf", "Document"),
    ("MEDIA_KIND_DOCUMENT", "application/x-msdownload", "Unsupported"),
]
STUB_POOLS = {"Image", "Sticker", "Audio", "Video", "Document"}


def _header(bot: str, provider_id: str) -> dict[str, str]:
    return {
        "botId": bot,
        "correspondentId": CHAT,
        "sender": CHAT,
        "providerMessageId": provider_id,
        "originatingTime": iso_now(),
    }


def _frames(bot_index: int, staging: Path) -> tuple[list[str], dict[str, str]]:
    """A bot's frames: a text, one media message, a corrupt one every fourth bot; and
    the expected pool by provider message id."""
    bot = BOTS[bot_index]
    kind, mime, pool = MEDIA[bot_index % len(MEDIA)]
    media_id = str(uuid.uuid4())
    (staging / media_id).write_bytes(b"not really media")
    frames = [
        {"textMessage": {"header": _header(bot, f"{bot}-text"), "message": f"hello from {bot}"}},
        {
            "mediaMessage": {
                "header": _header(bot, f"{bot}-media"),
                "message": f"caption of {bot}",
                "mediaProcessingId": media_id,
                "mimeType": mime,
                "mediaKind": kind,
                "fileSize": "16",
            }
        },
    ]
    pools = {f"{bot}-media": pool}
    if bot_index % 4 == 0:
        frames.append(
            {
                "corruptMediaMessage": {
                    "header": _header(bot, f"{bot}-corrupt"),
                    "message": "",
                    "mimeType": "image/jpeg",
                    "mediaKind": "MEDIA_KIND_IMAGE",
                    "reason": "download failed: 404",
                }
            }
        )
        pools[f"{bot}-corrupt"] = "Corrupt"
    texts = [json.dumps({"frameId": f"f-{uuid.uuid4().hex}", **f}) for f in frames]
    return texts, pools


async def _send(http: aiohttp.ClientSession, gateway: str, frames: list[str]) -> None:
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with http.ws_connect(f"http://{gateway}/ws", headers=headers) as ws:
        for text in frames:
            await ws.send_str(text)
        statuses = []
        for _ in frames:
            statuses.append(parse_gateway_frame((await ws.receive(timeout=15)).data).ack.status)
    assert statuses == [w.ACK_STATUS_ACCEPTED] * len(frames)


SENTINELS = {f"sentinel-{i}" for i in range(SHARDS)}


async def _no_live_jobs(db: Path) -> None:
    """Every media job has ended (delivered and deleted, or failed)."""
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))

    async def ended() -> bool:
        for bot in BOTS:
            for collection in (JobCollection.ACTIVE, JobCollection.HOLDING):
                if await store.list_jobs(bot, collection):
                    return False
        return True

    try:
        await eventually(ended, within=30)
    finally:
        await store.close()


async def _sentinels(addresses: list[str]) -> None:
    for index, address in enumerate(addresses):
        bot = next(b for b in BOTS if shard_of(b, SHARDS) == index)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            sent = Timestamp()
            sent.FromDatetime(datetime.now(UTC))
            await stub.AddMessage(
                queue_service_pb2.AddMessageRequest(
                    bot_id=bot,
                    correspondent_id=CHAT,
                    message=queue_service_pb2.NewMessage(
                        content="sentinel",
                        sender=CHAT,
                        source=message_pb2.MESSAGE_SOURCE_USER,
                        originating_time=sent,
                        provider_message_id=f"sentinel-{index}",
                    ),
                ),
                timeout=10,
            )


def _trace(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_shards_and_pool_filtered_replicas_serve_a_fleet(tmp_path: Path) -> None:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    node_runner, node_url = await fake_node_api([], NODE_API_TOKEN)
    # Zero-delay stubs in the media pools: this test is about routing, not engines, and
    # its staged bytes are not real media.
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        await store.put_processor_definitions(
            stub_definitions({pool: {"text": f"[{pool} received]"} for pool in STUB_POOLS})
        )
    finally:
        await store.close()
    services: list[Service] = []
    try:
        queues = await asyncio.gather(
            *(
                start_service(
                    "services.queue_svc",
                    queue_env(db, shard=f"{i}/{SHARDS}"),
                    tmp_path / f"queue-{i}.log",
                )
                for i in range(SHARDS)
            )
        )
        services.extend(queues)
        addresses = [q.address for q in queues]
        joined = ",".join(addresses)
        traces = {role: tmp_path / f"trace-{role}.jsonl" for role in ROLES}
        started = await asyncio.gather(
            *(
                start_service(
                    "services.media_svc",
                    media_env(
                        db,
                        staging,
                        joined,
                        MEDIA_POOLS=",".join(sorted(pools)),
                        MEDIA_SVC_TRACE_PATH=str(traces[role]),
                        MEDIA_WORKER_ID=f"media-{role}",
                    ),
                    tmp_path / f"media-{role}.log",
                )
                for role, pools in ROLES.items()
            ),
            start_service(
                "services.gateway",
                gateway_env(
                    db,
                    joined,
                    node_url,
                    node_ws_token=NODE_TOKEN,
                    api_token=API_TOKEN,
                    node_api_token=NODE_API_TOKEN,
                ),
                tmp_path / "gateway.log",
            ),
        )
        services.extend(started)
        gateway = started[-1]
        subscriber = Subscriber(addresses)
        await subscriber.start()
        expected_pools: dict[str, str] = {}
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            for bot in BOTS:
                api = f"http://{gateway.address}/bots/{bot}"
                async with http.put(f"{api}/config", json={}, headers=auth) as r:
                    assert r.status == 200, await r.text()
                async with http.post(f"{api}/start", json={}, headers=auth) as r:
                    assert r.status == 200, await r.text()
            batches = [_frames(i, staging) for i in range(len(BOTS))]
            for _, pools in batches:
                expected_pools.update(pools)
            await asyncio.gather(*(_send(http, gateway.address, f) for f, _ in batches))

        total = len(BOTS) + len(expected_pools)
        await subscriber.wait_for(total, within=60)
        # No job left to deliver, then one sentinel through every shard: a duplicate
        # already emitted arrives before its shard's sentinel (one ordered stream each).
        await _no_live_jobs(db)
        await _sentinels(addresses)
        await subscriber.wait_for(total + SHARDS, within=15)
        await subscriber.close()
        sentinels = [m for m in subscriber.messages if m.message.provider_message_id in SENTINELS]
        assert len(sentinels) == SHARDS
        for message in sentinels:
            subscriber.origins.pop(subscriber.messages.index(message))
            subscriber.messages.remove(message)

        # Each bot out of its own shard only; every message exactly once.
        ids = Counter(m.message.provider_message_id for m in subscriber.messages)
        assert ids == Counter([f"{b}-text" for b in BOTS] + list(expected_pools))
        for message, origin in zip(subscriber.messages, subscriber.origins, strict=True):
            assert origin == addresses[shard_of(message.bot_id, SHARDS)], message.bot_id
            provider_id = message.message.provider_message_id
            pool = expected_pools.get(provider_id)
            if pool in STUB_POOLS:
                # The placeholder was resolved by the pool the message was routed to.
                assert f"[{pool} received" in message.message.content, message.message.content
                assert not message.message.HasField("media_processing_id")

        # Every job claimed exactly once, by a replica that serves its pool.
        claims = {role: _trace(path) for role, path in traces.items()}
        for role, lines in claims.items():
            assert {c["pool"] for c in lines} <= ROLES[role], role
        all_claims = [c for lines in claims.values() for c in lines]
        assert Counter(c["id"] for c in all_claims).most_common(1)[0][1] == 1
        assert Counter(c["pool"] for c in all_claims) == Counter(expected_pools.values())
        assert all(claims.values()), "a role claimed nothing"
    finally:
        for service in reversed(services):
            assert await service.stop() == 0, f"{service.name} did not stop cleanly"
        await node_runner.cleanup()
