"""The gateway's QueueWriter with two queue_svc shards (real servicers and services on
one SQLite file, real loopback gRPC servers): each frame goes to its bot's shard, text
batches never mix shards, and each chat keeps its order."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import PreconditionError
from services.common.queue_shards import QueueShards
from services.common.sharding import ShardAddresses, ShardIdentity
from services.common.store import StoreConfig, open_store
from services.gateway.queue_lifecycle import QueueLifecycle
from services.gateway.queue_writer import QueueWriter
from services.queue_svc.server import grpc_edge
from services.queue_svc.service import QueueService, ServiceSettings
from services.queue_svc.servicer import QueueServicer
from tests.helpers.shards import bot_on_shard

BOTS = [bot_on_shard(0, 2, "gw"), bot_on_shard(1, 2, "gw")]
CHATS = ["c1", "c2"]
PER_CHAT = 15


@dataclass
class Shard:
    service: QueueService
    address: str
    calls: Counter[str]


@pytest.fixture
async def shards(tmp_path: Path) -> AsyncIterator[list[Shard]]:
    config = StoreConfig(backend="sqlite", sqlite_path=tmp_path / "chatbot.sqlite3")
    stores, servers, out = [], [], []
    for index in range(2):
        store = await open_store(config)
        settings = ServiceSettings(definitions_refresh_seconds=0.0, shard=ShardIdentity(index, 2))
        service = QueueService(store, settings)
        await service.start()
        await service.start_bot(BOTS[index])
        calls: Counter[str] = Counter()

        def observe(method: str, code: str, seconds: float, calls: Counter[str] = calls) -> None:
            calls[method] += 1

        server = grpc.aio.server(interceptors=[grpc_edge(observe)])
        q_grpc.add_QueueServiceServicer_to_server(QueueServicer(service), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stores.append(store)
        servers.append(server)
        out.append(Shard(service, f"127.0.0.1:{port}", calls))
    yield out
    for shard, server, store in zip(out, servers, stores, strict=True):
        await server.stop(None)
        await shard.service.shutdown()
        await store.close()


def text(bot: str, chat: str, n: int) -> q.AddMessageRequest:
    message = q.NewMessage(
        content=f"{bot}/{chat}/{n}",
        sender=chat,
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=f"WA-{bot}-{chat}-{n}",
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id=bot, correspondent_id=chat, message=message)


def media(bot: str) -> q.InjectPlaceholderRequest:
    message = q.NewMessage(
        content="caption", sender="c1", source=m.MESSAGE_SOURCE_USER, provider_message_id="WA-m"
    )
    message.originating_time.GetCurrentTime()
    return q.InjectPlaceholderRequest(
        bot_id=bot,
        correspondent_id="c1",
        message=message,
        media_processing_id=str(uuid.uuid4()),
        mime_type="image/jpeg",
        media_kind=m.MEDIA_KIND_IMAGE,
        file_size=3,
        condition=q.MEDIA_CONDITION_STAGED,
    )


async def test_frames_go_to_their_bots_shard_in_per_chat_order(shards: list[Shard]) -> None:
    queue = QueueShards(ShardAddresses(tuple(s.address for s in shards)))
    writer = QueueWriter(queue, window_seconds=0.01, max_batch=256, timeout_seconds=10)
    writer.start()
    try:
        # Interleaved across bots and chats, all in flight at once, like frames of one
        # Node connection; tasks start in this order.
        requests = [text(b, c, n) for n in range(PER_CHAT) for c in CHATS for b in BOTS]
        acks = await asyncio.gather(*(writer.add_text(r) for r in requests))
        placed = await asyncio.gather(*(writer.inject_placeholder(media(b)) for b in BOTS))
    finally:
        await writer.close()
        await queue.close()
    assert [a.status for a in acks] == [w.ACK_STATUS_ACCEPTED] * len(requests), acks
    assert [a.status for a in placed] == [w.ACK_STATUS_ACCEPTED] * 2
    for index, shard in enumerate(shards):
        bot = BOTS[index]
        for chat in CHATS:
            window = await shard.service.window(bot, chat)
            contents = [msg.content for msg in window.messages if not msg.is_placeholder]
            assert contents == [f"{bot}/{chat}/{n}" for n in range(PER_CHAT)]
        window = await shard.service.window(bot, "c1")
        assert sum(msg.is_placeholder for msg in window.messages) == 1
        # Batched: far fewer calls than messages. A batch holding the other shard's bot
        # would have answered BOT_NOT_ACTIVE (RETRY) for it.
        assert 1 <= shard.calls["AddMessages"] < PER_CHAT * len(CHATS)
        # The placeholders went out together: one batched call per shard, its own bot's.
        assert shard.calls["InjectPlaceholders"] == 1
        assert shard.calls["InjectPlaceholder"] == 0


async def test_lifecycle_client_turns_queue_svc_statuses_into_domain_errors(
    shards: list[Shard],
) -> None:
    """The HTTP API sees domain errors only: a shard that refuses the bot answers
    FAILED_PRECONDITION, which reaches the gateway as a PreconditionError (HTTP 409)."""
    routed = QueueShards(ShardAddresses(tuple(s.address for s in shards)))
    crossed = QueueShards(ShardAddresses(tuple(s.address for s in reversed(shards))))
    try:
        started = await QueueLifecycle(routed, 10.0).start_bot(BOTS[0])
        assert started.started is False  # already active on its own shard
        with pytest.raises(PreconditionError, match=r"queue_svc FAILED_PRECONDITION: .*shard"):
            await QueueLifecycle(crossed, 10.0).stop_bot(BOTS[0])
        assert shards[0].service.is_active(BOTS[0])
    finally:
        await routed.close()
        await crossed.close()
