"""Crash points of the media job lifecycle, with real queue_svc and media_svc processes.

Each scenario ends with every message in the queue exactly once, as text or as a failure
marker: checked on the Subscribe stream and in `queues` after StopBot's final drain.
MEDIA_SVC_CRASH_AT is media_svc's test hook: it SIGKILLs itself at that point.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc

from services.common.store import JobCollection, JobStatus, Store, StoreConfig, open_store
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
from tests.helpers.waiting import eventually, wait_until

BOT = "bot-crash"
CHAT = "4915100000001@s.whatsapp.net"
IMAGE_TEXT = "IMG"
DOC_TEXT = "DOC"


@dataclass
class Stack:
    tmp: Path
    db: Path
    staging: Path
    queue_port: int
    queue: Service
    channel: grpc.aio.Channel
    stub: queue_service_pb2_grpc.QueueServiceAsyncStub
    subscriber: Subscriber
    store: Store

    async def start_queue(self) -> None:
        self.queue = await start_service(
            "services.queue_svc", queue_env(self.db, self.queue_port), self.tmp / "queue.log"
        )

    async def start_media(self, name: str, **env: str) -> Service:
        # Each crash process may first claim an older job whose 1 s lease ran out while it
        # started, so one job can be claimed by all four of them and then by the recovery:
        # five claims, which must not count as a job that keeps crashing its worker.
        env = {"MEDIA_MAX_ATTEMPTS": "5", **env}
        return await start_service(
            "services.media_svc",
            media_env(self.db, self.staging, self.queue.address, **env),
            self.tmp / f"media-{name}.log",
        )

    async def inject(self, **kwargs: Any) -> queue_service_pb2.InjectPlaceholderRequest:
        request = placeholder(BOT, CHAT, **kwargs)
        if request.condition == queue_service_pb2.MEDIA_CONDITION_STAGED:
            (self.staging / request.media_processing_id).write_bytes(b"abc")
        await self.stub.InjectPlaceholder(request, timeout=10)
        return request

    async def wait_job(self, media_id: str, want: Any, within: float = 15) -> None:
        async def matches() -> bool:
            return bool(want(await self.store.get_job(media_id)))

        await eventually(matches, within)

    async def wait_finished(self, media_id: str, within: float = 15) -> None:
        """The job is deleted, then its staged file (a moment later)."""
        await self.wait_job(media_id, gone, within)
        await wait_until(lambda: not (self.staging / media_id).exists(), within=5)

    async def cleanup_runs(self, name: str, count: int, within: float = 10) -> None:
        """Waits until media_svc `name` has finished `count` more cleanup runs."""
        log = self.tmp / f"media-{name}.log"

        def runs() -> int:
            return log.read_text().count("cleanup: CleanupReport(")

        before = runs()
        await wait_until(lambda: runs() >= before + count, within)

    async def persisted(self) -> Counter[tuple[str, str]]:
        """(provider message id, content) of every message in `queues` after a drain."""
        await self.stub.StopBot(queue_service_pb2.StopBotRequest(bot_id=BOT), timeout=15)
        history = await self.store.message_history(BOT, "whatsapp_baileys", CHAT, limit=10_000)
        return Counter((m.provider_message_id, m.content) for m in history)


def definitions_document() -> dict[str, Any]:
    document = stub_definitions(
        {"Image": {"text": IMAGE_TEXT}, "Document": {"text": DOC_TEXT, "delay_seconds": 1.0}}
    )
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["concurrency"] = 16
    return document


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    await store.put_processor_definitions(definitions_document())
    port = free_port()
    queue = await start_service("services.queue_svc", queue_env(db, port), tmp_path / "queue.log")
    channel = grpc.aio.insecure_channel(queue.address)
    stub = queue_service_pb2_grpc.QueueServiceStub(channel)
    await stub.StartBot(queue_service_pb2.StartBotRequest(bot_id=BOT), timeout=10)
    subscriber = Subscriber(queue.address, BOT)
    await subscriber.start()
    result = Stack(tmp_path, db, staging, port, queue, channel, stub, subscriber, store)
    try:
        yield result
    finally:
        await subscriber.close()
        await channel.close(None)
        await result.queue.kill()
        await store.close()


def gone(found: object) -> bool:
    return found is None


async def test_media_svc_killed_at_every_point_delivers_each_message_once(stack: Stack) -> None:
    requests = {}
    for point in ("after_claim", "during_processing", "after_persist", "after_deliver"):
        media = await stack.start_media(point, MEDIA_SVC_CRASH_AT=point)
        requests[point] = await stack.inject(caption=f"cap {point}")
        assert await media.wait_exit(20) == -9, point
        await media.kill()
    media = await stack.start_media("recovery")
    try:
        await stack.subscriber.wait_for(len(requests), 30)
        for request in requests.values():
            await stack.wait_finished(request.media_processing_id)
    finally:
        assert await media.stop() == 0
    for point, request in requests.items():
        assert stack.subscriber.contents(request.message.provider_message_id) == [
            f"{IMAGE_TEXT}\nCaption: cap {point}"
        ], point
    persisted = await stack.persisted()
    assert persisted == Counter(
        (r.message.provider_message_id, f"{IMAGE_TEXT}\nCaption: cap {p}")
        for p, r in requests.items()
    )


# When StartBot applies a result it deletes the job; the staged file then has no job and
# the cleanup removes it after the orphan grace period (shortened here).
ORPHAN_CLEANUP = {"MEDIA_ORPHAN_GRACE_SECONDS": "0.5", "MEDIA_CLEANUP_INTERVAL_SECONDS": "0.3"}


async def test_bot_stopped_during_processing_gets_result_on_next_start(stack: Stack) -> None:
    media = await stack.start_media("main", **ORPHAN_CLEANUP)
    try:
        request = await stack.inject(
            media_kind=message_pb2.MEDIA_KIND_DOCUMENT, mime_type="application/pdf", caption="cv"
        )
        media_id = request.media_processing_id
        await stack.wait_job(media_id, lambda f: f and f[1].status is JobStatus.PROCESSING)
        stopped = await stack.stub.StopBot(queue_service_pb2.StopBotRequest(bot_id=BOT))
        assert stopped.jobs_parked == 1
        await stack.wait_job(
            media_id,
            lambda f: f and f[0] is JobCollection.HOLDING and f[1].status is JobStatus.COMPLETED,
        )
        assert stack.subscriber.contents(request.message.provider_message_id) == []
        started = await stack.stub.StartBot(queue_service_pb2.StartBotRequest(bot_id=BOT))
        assert started.results_applied == 1
        await stack.subscriber.wait_for(1, 10)
        await stack.wait_finished(media_id)
    finally:
        assert await media.stop() == 0
    pid = request.message.provider_message_id
    assert stack.subscriber.contents(pid) == [f"{DOC_TEXT}\nCaption: cv"]
    assert await stack.persisted() == Counter({(pid, f"{DOC_TEXT}\nCaption: cv"): 1})


async def test_cleanup_racing_a_worker_resolves_once(stack: Stack) -> None:
    media = await stack.start_media(
        "cleanup",
        MEDIA_STALE_AFTER_SECONDS="0.4",
        MEDIA_CLEANUP_INTERVAL_SECONDS="0.2",
    )
    try:
        request = await stack.inject(
            media_kind=message_pb2.MEDIA_KIND_DOCUMENT, mime_type="application/pdf"
        )
        await stack.wait_job(
            request.media_processing_id, lambda f: f and f[0] is JobCollection.FAILED
        )
        await stack.subscriber.wait_for(1, 10)
        # The worker's run is stopped by its lost lease (or its result refused by the
        # fence), and says so in the log.
        log = stack.tmp / "media-cleanup.log"
        await wait_until(
            lambda: (
                f"lease of {request.media_processing_id} lost" in log.read_text()
                or f"result of {request.media_processing_id} not saved" in log.read_text()
            ),
            within=10,
        )
    finally:
        assert await media.stop() == 0
    pid = request.message.provider_message_id
    assert stack.subscriber.contents(pid) == ["[Document not processed: timed out]"]
    assert not (stack.staging / request.media_processing_id).exists()
    assert await stack.persisted() == Counter({(pid, "[Document not processed: timed out]"): 1})


async def test_job_of_a_bot_stopped_past_the_stale_bound_reaches_the_queue_on_start(
    stack: Stack,
) -> None:
    # Accepted while no media_svc runs, then the bot stops: the job waits in holding.
    request = await stack.inject(
        media_kind=message_pb2.MEDIA_KIND_DOCUMENT, mime_type="application/pdf", caption="cv"
    )
    media_id, pid = request.media_processing_id, request.message.provider_message_id
    stopped = await stack.stub.StopBot(queue_service_pb2.StopBotRequest(bot_id=BOT))
    assert stopped.jobs_parked == 1
    marker = "[Document not processed: timed out]\nCaption: cv"
    media = await stack.start_media(
        "cleanup", MEDIA_STALE_AFTER_SECONDS="0.4", MEDIA_CLEANUP_INTERVAL_SECONDS="0.2"
    )
    try:
        # The cleanup times it out in place instead of dead-lettering it.
        await stack.wait_job(
            media_id,
            lambda f: f and f[0] is JobCollection.HOLDING and f[1].status is JobStatus.COMPLETED,
        )
        kept = await stack.store.get_job(media_id)
        assert kept is not None
        assert kept[1].result == marker and kept[1].fence == 1
        assert (kept[1].error or "").startswith("timed_out: not processed within")
        assert not (stack.staging / media_id).exists()
        await stack.cleanup_runs("cleanup", 3)  # several more runs leave it as it is
        assert await stack.store.get_job(media_id) == kept
        assert stack.subscriber.contents(pid) == []

        started = await stack.stub.StartBot(queue_service_pb2.StartBotRequest(bot_id=BOT))
        assert started.results_applied == 1
        await stack.subscriber.wait_for(1, 10)
        await stack.wait_job(media_id, lambda f: f and f[0] is JobCollection.FAILED)
        # Cleanup runs (and redelivery sweeps between them) add nothing.
        await stack.cleanup_runs("cleanup", 2)
    finally:
        assert await media.stop() == 0
    failed = await stack.store.get_job(media_id)
    assert failed is not None and failed[1].error == kept[1].error
    assert stack.subscriber.contents(pid) == [marker]
    assert await stack.persisted() == Counter({(pid, marker): 1})


async def test_queue_svc_killed_while_media_is_processed(stack: Stack) -> None:
    media = await stack.start_media("main", **ORPHAN_CLEANUP)
    try:
        request = await stack.inject(
            media_kind=message_pb2.MEDIA_KIND_DOCUMENT, mime_type="application/pdf", caption="x"
        )
        media_id = request.media_processing_id
        await stack.wait_job(media_id, lambda f: f and f[1].status is JobStatus.PROCESSING)
        await stack.queue.kill()
        # The result is persisted while queue_svc is down; delivery keeps retrying.
        await stack.wait_job(media_id, lambda f: f and f[1].status is JobStatus.COMPLETED)
        await stack.start_queue()
        # queue_svc may resume the bot by itself; StartBot is then a no-op.
        await stack.stub.StartBot(
            queue_service_pb2.StartBotRequest(bot_id=BOT), timeout=10, wait_for_ready=True
        )
        await stack.wait_finished(media_id)
    finally:
        assert await media.stop() == 0
    pid = request.message.provider_message_id
    assert await stack.persisted() == Counter({(pid, f"{DOC_TEXT}\nCaption: x"): 1})


async def test_two_media_svc_processes_never_process_a_job_twice(stack: Stack) -> None:
    count = 2000
    traces = [stack.tmp / "trace-a.jsonl", stack.tmp / "trace-b.jsonl"]
    medias = [
        await stack.start_media(
            f"twin{i}", MEDIA_SVC_TRACE_PATH=str(trace), MEDIA_LEASE_SECONDS="30"
        )
        for i, trace in enumerate(traces)
    ]
    try:
        requests = [placeholder(BOT, CHAT) for _ in range(count)]
        for request in requests:
            (stack.staging / request.media_processing_id).write_bytes(b"abc")
        for start in range(0, count, 200):
            await asyncio.gather(
                *(
                    stack.stub.InjectPlaceholder(r, timeout=30)
                    for r in requests[start : start + 200]
                )
            )
        await stack.subscriber.wait_for(count, 90)
    finally:
        for media in medias:
            assert await media.stop() == 0
    claims = [json.loads(line) for trace in traces for line in trace.read_text().splitlines()]
    per_id = Counter(c["id"] for c in claims)
    assert len(per_id) == count
    assert max(per_id.values()) == 1, "a job was claimed twice"
    assert {c["pid"] for c in claims} == {m.process.pid for m in medias}
    delivered = Counter(m.message.provider_message_id for m in stack.subscriber.messages)
    assert len(delivered) == count and max(delivered.values()) == 1
    persisted = await stack.persisted()
    assert sum(persisted.values()) == count and max(persisted.values()) == 1


async def test_a_stalled_replica_loses_its_lease_and_only_the_new_claims_result_counts(
    stack: Stack,
) -> None:
    """Replica A claims a document and freezes (SIGSTOP) past its lease; replica B claims
    it again and delivers. When A wakes, its run is stopped (its renewal is refused), or
    its result is refused by the fence, or (frozen before it read the file) it finds the
    file gone and does not record the failure since its lease is lost: each is logged.
    The message is in the queue once."""
    # A run long enough that A is surely frozen mid-run, not after it.
    document = definitions_document()
    for pool in document["pools"]:
        if pool["name"] == "Document":
            pool["options"]["delay_seconds"] = 4.0
    await stack.store.put_processor_definitions(document)
    stalled = await stack.start_media(
        "stalled", MEDIA_POOLS="Document", MEDIA_WORKER_ID="replica-a"
    )
    live = None
    try:
        request = await stack.inject(
            media_kind=message_pb2.MEDIA_KIND_DOCUMENT, mime_type="application/pdf", caption="L"
        )
        media_id = request.media_processing_id
        await stack.wait_job(
            media_id,
            lambda f: f and f[1].status is JobStatus.PROCESSING and f[1].claimed_by == "replica-a",
        )
        stalled.process.send_signal(signal.SIGSTOP)
        live = await stack.start_media("live", MEDIA_POOLS="Document", MEDIA_WORKER_ID="replica-b")
        await stack.wait_finished(media_id)
        stalled.process.send_signal(signal.SIGCONT)
        log = stack.tmp / "media-stalled.log"
        # Which of the three A meets depends on how far it got before the freeze: its
        # renewal refused, its result refused by the fence, or (frozen before it read the
        # file) the file already deleted by B, a failure it does not record as its lease
        # is gone.
        await wait_until(
            lambda: (
                f"lease of {media_id} lost" in log.read_text()
                or f"result of {media_id} not saved" in log.read_text()
                or any(
                    media_id in line and "lease already lost" in line
                    for line in log.read_text().splitlines()
                )
            ),
            within=10,
        )
    finally:
        stalled.process.send_signal(signal.SIGCONT)
        assert await stalled.stop() == 0
        if live is not None:
            assert await live.stop() == 0
    pid = request.message.provider_message_id
    assert stack.subscriber.contents(pid) == [f"{DOC_TEXT}\nCaption: L"]
    assert await stack.persisted() == Counter({(pid, f"{DOC_TEXT}\nCaption: L"): 1})
