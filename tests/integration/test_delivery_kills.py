"""queue_svc SIGKILLed at random moments under load — also while it starts and StartBot
applies completed media results — and a consumer that resumes Subscribe from its cursors
ends with every persisted message exactly once, in per-correspondent order for text.

The pauses before each kill and the writers' choice of correspondent come from one
seeded generator: the seed is printed first (pytest shows it with a failure), and
DELIVERY_KILLS_SEED=<seed> replays the same draws."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

import grpc
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.store import Store, StoreConfig, open_store
from tests.helpers.delivery import ResumingSubscriber
from tests.helpers.processes import REPO, Service, free_port, placeholder, queue_env, start_service

BOTS = ("bot-k1", "bot-k2")
CHATS = tuple(f"49151000000{i:02d}@s.whatsapp.net" for i in range(6))
MEDIA_CHAT = "4915199999999@s.whatsapp.net"
ROUNDS = 6
MEDIA_PER_ROUND = 3
# Frames per AddMessages call, as the gateway batches them.
BATCH = 50


def text(bot: str, chat: str, n: int) -> q.AddMessageRequest:
    message = q.NewMessage(
        content=f"{chat}#{n}",
        sender=chat,
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=f"WA-{bot}-{chat}-{n}",
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id=bot, correspondent_id=chat, message=message)


class Load:
    """Node's outbox in miniature: each bot's frames go in order and a frame is resent
    until queue_svc answers (ADDED or DUPLICATE), whatever happened to the process."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sent: dict[tuple[str, str], int] = defaultdict(int)
        self.stop = asyncio.Event()

    async def call(self, method: str, request: object) -> object:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub = q_grpc.QueueServiceStub(channel)
                    return await getattr(stub, method)(request, timeout=5)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)

    async def write(self, bot: str, rng: random.Random) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = q_grpc.QueueServiceStub(channel)
            while not self.stop.is_set():
                batch = []
                for _ in range(BATCH):
                    chat = rng.choice(CHATS)
                    self.sent[bot, chat] += 1
                    batch.append(text(bot, chat, self.sent[bot, chat]))
                request = q.AddMessagesRequest(messages=batch)
                while True:
                    try:
                        reply = await stub.AddMessages(request, timeout=5)
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.05)
                        continue
                    assert all(
                        r.status in (q.ADD_STATUS_ADDED, q.ADD_STATUS_DUPLICATE)
                        for r in reply.results
                    ), reply
                    break
                await asyncio.sleep(0.01)


async def complete_media(load: Load, store: Store, round_: int) -> list[str]:
    """Placeholders whose results media_svc persisted without delivering them (as if it
    were waiting for queue_svc): the next StartBot applies them."""
    results = []
    for i in range(MEDIA_PER_ROUND):
        request = placeholder(BOTS[0], MEDIA_CHAT, provider_message_id=f"WA-M-{round_}-{i}")
        await load.call("InjectPlaceholder", request)
        job = await store.get_job(request.media_processing_id)
        assert job is not None
        claim = await store.claim_job([job[1].pool], "test-worker", 30)
        assert claim is not None
        result = f"IMG-{round_}-{i}"
        assert await store.complete_job(claim.job.media_processing_id, claim.token, result)
        results.append(result)
    return results


async def start_queue(db: Path, port: int, tmp_path: Path) -> Service:
    return await start_service(
        "services.queue_svc", queue_env(db, port=port), tmp_path / "queue.log", within=30
    )


async def kill_while_starting(db: Path, port: int, tmp_path: Path, after: float) -> None:
    """Started and SIGKILLed before (or just after) it listens: maybe mid-StartBot."""
    env = {**queue_env(db, port=port)}
    log = (tmp_path / "queue.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.queue_svc",
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    await asyncio.sleep(after)
    process.kill()
    await process.wait()
    log.close()


async def test_a_resuming_consumer_sees_every_persisted_message_once_across_kills(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("DELIVERY_KILLS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"DELIVERY_KILLS_SEED={seed}", flush=True)
    rng = random.Random(seed)
    db, port = tmp_path / "store.sqlite3", free_port()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    queue = await start_queue(db, port, tmp_path)
    load = Load(queue.address)
    consumer = ResumingSubscriber([queue.address], BOTS)
    media_results: list[str] = []
    startup_kills = 0
    try:
        for bot in BOTS:
            await load.call("StartBot", q.StartBotRequest(bot_id=bot))
        consumer.start()
        writers = [asyncio.create_task(load.write(bot, rng)) for bot in BOTS]
        clock = asyncio.get_running_loop().time
        up_since, up_seconds = clock(), 0.0
        for round_ in range(ROUNDS):
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            media_results += await complete_media(load, store, round_)
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            await queue.kill()
            up_seconds += clock() - up_since
            if round_ % 2:
                await kill_while_starting(db, port, tmp_path, rng.uniform(0.3, 0.9))
                startup_kills += 1
            queue = await start_queue(db, port, tmp_path)
            up_since = clock()
        await asyncio.sleep(0.3)
        load.stop.set()
        await asyncio.gather(*writers)
        up_seconds += clock() - up_since
        tops = {bot: await store.max_sequence(bot) for bot in BOTS}
        for bot in BOTS:
            await consumer.wait_for(bot, tops[bot], within=20)
        persisted = {bot: await _all_persisted(store, bot) for bot in BOTS}
    finally:
        await consumer.close()
        await queue.kill()
        await store.close()

    for bot in BOTS:
        received = [msg for msg in consumer.messages if msg.bot_id == bot]
        # Exactly once and in the order persisted: the same sequences, no repeat, no gap.
        assert [msg.sequence for msg in received] == [s for s, _, _ in persisted[bot]]
        assert [(msg.correspondent_id, msg.message.content) for msg in received] == [
            (chat, content) for _, chat, content in persisted[bot]
        ]
        # Every acknowledged text is there, in the order it was sent per correspondent.
        for chat in CHATS:
            texts = [msg.message.content for msg in received if msg.correspondent_id == chat]
            assert texts == [f"{chat}#{n}" for n in range(1, load.sent[bot, chat] + 1)]
    # The results StartBot applied while the process was not listening yet.
    media_seen = [
        msg.message.content for msg in consumer.messages if msg.correspondent_id == MEDIA_CHAT
    ]
    assert sorted(media_seen) == sorted(media_results)
    total = sum(len(p) for p in persisted.values())
    print(
        f"kills={ROUNDS + startup_kills} (during start-up: {startup_kills})"
        f" persisted={total} received={len(consumer.messages)}"
        f" text_frames_per_s_while_up={sum(load.sent.values()) / up_seconds:.0f}"
        f" media_applied_at_start={len(media_results)} subscribe_attempts={consumer.reconnects}"
    )


async def _all_persisted(store: Store, bot: str) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    after = 0
    while page := await store.messages_after(bot, after, 1000):
        rows += [(msg.sequence or 0, msg.correspondent_id, msg.content) for msg in page]
        after = rows[-1][0]
    return rows
