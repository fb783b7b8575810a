"""A job over its pool's memory cap ends as the "too large" failure marker, once, not as
a crashed worker retried into "could not be processed": real queue_svc and media_svc, a
blocking pool whose worker process allocates more than the pool's RLIMIT_AS allows."""

from __future__ import annotations

from pathlib import Path

import grpc
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc

from services.common.store import JobCollection, StoreConfig, open_store
from tests.helpers.definitions import stub_definitions
from tests.helpers.processes import (
    Subscriber,
    media_env,
    placeholder,
    queue_env,
    start_service,
)
from tests.helpers.waiting import eventually

BOT = "bot-memory"
CHAT = "4915100000001@s.whatsapp.net"
CAP_MB = 400
ALLOCATE_MB = 2048


async def test_a_job_over_its_memory_cap_ends_as_the_too_large_marker(tmp_path: Path) -> None:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    document = stub_definitions(pools=("Image",))
    [image] = [p for p in document["pools"] if p["name"] == "Image"]
    image.update(
        processor="stub_blocking",
        options={"allocate_mb": ALLOCATE_MB},
        memory_limit_mb=CAP_MB,
        max_attempts=3,
    )
    await store.put_processor_definitions(document)
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    media = None
    subscriber = Subscriber(queue.address, BOT)
    try:
        async with grpc.aio.insecure_channel(queue.address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            await stub.StartBot(queue_service_pb2.StartBotRequest(bot_id=BOT), timeout=10)
            await subscriber.start()
            media = await start_service(
                "services.media_svc",
                media_env(db, staging, queue.address, MEDIA_POOLS="Image"),
                tmp_path / "media.log",
            )
            request = placeholder(BOT, CHAT, caption="big")
            (staging / request.media_processing_id).write_bytes(b"abc")
            await stub.InjectPlaceholder(request, timeout=10)
            await subscriber.wait_for(1, within=60)

            async def failed() -> bool:
                found = await store.get_job(request.media_processing_id)
                return found is not None and found[0] is JobCollection.FAILED

            await eventually(failed, within=10)
    finally:
        if media is not None:
            assert await media.stop() == 0
        await subscriber.close()
        await queue.stop()
    assert subscriber.contents(request.message.provider_message_id) == [
        "[Image not processed: too large to process]\nCaption: big"
    ]
    found = await store.get_job(request.media_processing_id)
    await store.close()
    assert found is not None
    # One attempt: the cap turned into a marker; no crash was retried.
    assert found[1].attempts == 1
    assert (found[1].error or "").startswith("too_large")
    assert "processor process died" not in (tmp_path / "media.log").read_text()
