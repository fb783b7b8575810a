"""One queue_svc shard down delays only its own bots' media (issue 23).

Two queue_svc shards, one media_svc with an Image pool of concurrency 1 on the stub
processor (a fixed delay). Bot A lives on shard 0, bot B on shard 1. B's image is being
processed when shard 1 is SIGKILLed; A's image, accepted right after, must come out as
fast as in a control run with both shards up (within one stub delay of it), because
B's undeliverable result frees the only slot at once instead of holding it. When shard 1
is back, B's result is delivered by the redelivery loop, exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc

from services.common.store import JobStatus, Store, StoreConfig, open_store
from tests.helpers.definitions import stub_definitions
from tests.helpers.processes import (
    Service,
    Subscriber,
    free_port,
    media_env,
    placeholder,
    queue_env,
    start_service,
)
from tests.helpers.shards import bot_on_shard
from tests.helpers.waiting import eventually

STUB_SECONDS = 1.0
BOT_A, BOT_B = bot_on_shard(0, 2, "outage"), bot_on_shard(1, 2, "outage")
CHAT = "4915100000001@s.whatsapp.net"


@dataclass
class Stack:
    tmp: Path
    db: Path
    staging: Path
    ports: list[int]
    shards: list[Service]
    store: Store
    subscriber: Subscriber

    async def start_shard(self, index: int) -> Service:
        return await start_service(
            "services.queue_svc",
            queue_env(self.db, self.ports[index], shard=f"{index}/2"),
            self.tmp / f"queue-{index}.log",
        )

    async def call(self, bot: str, method: str, request: object) -> object:
        index = 0 if bot == BOT_A else 1
        async with grpc.aio.insecure_channel(self.shards[index].address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            return await getattr(stub, method)(request, timeout=10)

    async def inject(self, bot: str, caption: str) -> queue_service_pb2.InjectPlaceholderRequest:
        request = placeholder(bot, CHAT, caption=caption)
        (self.staging / request.media_processing_id).write_bytes(b"abc")
        await self.call(bot, "InjectPlaceholder", request)
        return request

    async def processing(self, request: queue_service_pb2.InjectPlaceholderRequest) -> None:
        async def claimed() -> bool:
            found = await self.store.get_job(request.media_processing_id)
            return found is not None and found[1].status is JobStatus.PROCESSING

        await eventually(claimed, within=15)

    async def gone(self, request: queue_service_pb2.InjectPlaceholderRequest) -> bool:
        """The job ended: delivered and deleted."""
        return await self.store.get_job(request.media_processing_id) is None

    async def delivered(self, request: queue_service_pb2.InjectPlaceholderRequest) -> None:
        pid = request.message.provider_message_id

        async def arrived() -> bool:
            return bool(self.subscriber.contents(pid))

        await eventually(arrived, within=15 * STUB_SECONDS)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    document = stub_definitions({"Image": {"delay_seconds": STUB_SECONDS}}, concurrency=1)
    await store.put_processor_definitions(document)
    ports = [free_port(), free_port()]
    shards: list[Service] = []
    subscriber: Subscriber | None = None
    try:
        for index in range(2):
            shards.append(
                await start_service(
                    "services.queue_svc",
                    queue_env(db, ports[index], shard=f"{index}/2"),
                    tmp_path / f"queue-{index}.log",
                )
            )
        subscriber = Subscriber([s.address for s in shards])
        await subscriber.start()
        result = Stack(tmp_path, db, staging, ports, shards, store, subscriber)
        for bot in (BOT_A, BOT_B):
            await result.call(bot, "StartBot", queue_service_pb2.StartBotRequest(bot_id=bot))
        yield result
    finally:
        if subscriber is not None:
            await subscriber.close()
        for shard in shards:
            await shard.kill()
        await store.close()


async def a_latency_behind_b(
    stack: Stack, label: str, kill_b_shard: bool
) -> tuple[float, queue_service_pb2.InjectPlaceholderRequest]:
    """Seconds from accepting A's image to its result, while B's image (accepted first)
    occupies the pool's only slot; with `kill_b_shard`, B's shard dies meanwhile."""
    b = await stack.inject(BOT_B, f"B {label}")
    await stack.processing(b)
    if kill_b_shard:
        await stack.shards[1].kill()
    started = time.monotonic()
    a = await stack.inject(BOT_A, f"A {label}")
    await stack.delivered(a)
    return time.monotonic() - started, b


async def test_a_shard_down_delays_only_its_own_bots(stack: Stack) -> None:
    media = await start_service(
        "services.media_svc",
        media_env(
            stack.db,
            stack.staging,
            ",".join(s.address for s in stack.shards),
            MEDIA_POOLS="Image",
            MEDIA_REDELIVERY_AFTER_SECONDS="0.2",
            MEDIA_REDELIVERY_INTERVAL_SECONDS="0.2",
        ),
        stack.tmp / "media.log",
    )
    try:
        control, _ = await a_latency_behind_b(stack, "control", kill_b_shard=False)
        outage, b_outage = await a_latency_behind_b(stack, "outage", kill_b_shard=True)
        # Both runs wait for the rest of B's run and then A's own: the outage may add no
        # more than one stub delay of noise, never the outage's length.
        assert outage <= control + STUB_SECONDS, (control, outage)

        # B's result waits, persisted; when its shard is back it resumes its bots and
        # applies the result (or the redelivery loop delivers it): once, either way.
        stack.shards[1] = await stack.start_shard(1)

        async def b_in_history() -> list[str]:
            history = await stack.store.message_history(BOT_B, "whatsapp_baileys", CHAT, 100)
            return [m.content for m in history if m.content.endswith("Caption: B outage")]

        assert len(await eventually(b_in_history, within=30)) == 1
        await eventually(lambda: stack.gone(b_outage), within=10)
    finally:
        assert await media.stop() == 0
    contents = [m.message.content for m in stack.subscriber.messages]
    for caption in ("A control", "B control", "A outage"):
        assert sum(c.endswith(f"Caption: {caption}") for c in contents) == 1, (caption, contents)
