"""Fixtures for media_svc tests: the real SQLite store, a real staging directory, and a
scripted QueueService peer on a real loopback gRPC server (the real queue_svc is used by
the integration suite; here each answer of UpdateByMediaId must be chosen by the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc

from services.common.store import Store, StoreConfig, open_store
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.delivery import QueueDelivery
from services.media_svc.execution import PoolExecutors
from services.media_svc.metrics import MediaMetrics
from services.media_svc.processors.registry import default_registry
from services.media_svc.worker import JobWorker, WorkerSettings
from tests.helpers.staging import StagingDirectory

UPDATED = queue_service_pb2.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
NOT_FOUND = queue_service_pb2.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND
BOT_NOT_ACTIVE = queue_service_pb2.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE


class ScriptedQueue(queue_service_pb2_grpc.QueueServiceServicer):
    """Answers UpdateByMediaId (and each item of UpdateByMediaIds) from `answers` (then
    `default`), recording every call; an answer of None makes the call fail with
    UNAVAILABLE, a status code with that code."""

    def __init__(self) -> None:
        self.calls: list[queue_service_pb2.UpdateByMediaIdRequest] = []
        self.answers: list[int | grpc.StatusCode | None] = []
        self.default: int | grpc.StatusCode | None = UPDATED
        # Awaited with each UpdateByMediaId request before it is answered.
        self.on_update: (
            Callable[[queue_service_pb2.UpdateByMediaIdRequest], Awaitable[None]] | None
        ) = None
        # Sizes of the UpdateByMediaIds batches received; False answers them UNIMPLEMENTED.
        self.batches: list[int] = []
        self.batched = True

    async def UpdateByMediaId(  # noqa: N802 (gRPC method name)
        self,
        request: queue_service_pb2.UpdateByMediaIdRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> queue_service_pb2.UpdateByMediaIdResponse:
        self.calls.append(request)
        if self.on_update is not None:
            await self.on_update(request)
        answer = self.answers.pop(0) if self.answers else self.default
        if answer is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
        if isinstance(answer, grpc.StatusCode):
            await context.abort(answer, f"scripted {answer.name}")
        return queue_service_pb2.UpdateByMediaIdResponse(status=answer)  # type: ignore[arg-type]

    async def UpdateByMediaIds(  # noqa: N802 (gRPC method name)
        self,
        request: queue_service_pb2.UpdateByMediaIdsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> queue_service_pb2.UpdateByMediaIdsResponse:
        """The batched form, item by item from the same script (an answer of None or a
        status code fails the item with that code, as queue_svc answers an item); with
        `batched` off, UNIMPLEMENTED like a queue_svc from before the batched calls."""
        self.batches.append(len(request.updates))
        if not self.batched:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        results = []
        for update in request.updates:
            self.calls.append(update)
            if self.on_update is not None:
                await self.on_update(update)
            answer = self.answers.pop(0) if self.answers else self.default
            if answer is None:
                answer = grpc.StatusCode.UNAVAILABLE
            if isinstance(answer, grpc.StatusCode):
                results.append(
                    queue_service_pb2.UpdateByMediaIdsResult(
                        code=answer.value[0], error=f"scripted {answer.name}"
                    )
                )
                continue
            response = queue_service_pb2.UpdateByMediaIdResponse(status=answer)  # type: ignore[arg-type]
            results.append(queue_service_pb2.UpdateByMediaIdsResult(response=response))
        return queue_service_pb2.UpdateByMediaIdsResponse(results=results)


@dataclass
class QueuePeer:
    servicer: ScriptedQueue
    address: str
    server: grpc.aio.Server = field(repr=False)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "s.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def staging(tmp_path: Path, store: Store) -> StagingDirectory:
    return StagingDirectory(tmp_path / "staging", store)


@asynccontextmanager
async def scripted_queue_peer() -> AsyncIterator[QueuePeer]:
    servicer = ScriptedQueue()  # type: ignore[abstract]  # media_svc calls only these
    server = grpc.aio.server()
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield QueuePeer(servicer, f"127.0.0.1:{port}", server)
    finally:
        await server.stop(None)


@pytest.fixture
async def queue_peer() -> AsyncIterator[QueuePeer]:
    async with scripted_queue_peer() as peer:
        yield peer


@pytest.fixture
def metrics() -> MediaMetrics:
    return MediaMetrics()


@pytest.fixture
async def delivery(queue_peer: QueuePeer, metrics: MediaMetrics) -> AsyncIterator[QueueDelivery]:
    client = QueueDelivery(queue_peer.address, metrics, backoff_base=0.01, backoff_max=0.05)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def executor() -> Iterator[PoolExecutors]:
    executors = PoolExecutors()
    try:
        yield executors
    finally:
        executors.close()


def settings(**overrides: float | int | str) -> WorkerSettings:
    values: dict[str, float | int | str] = {
        "worker_id": "test-worker",
        "lease_seconds": 5.0,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        "not_found_backoff_seconds": 0.01,
    }
    values.update(overrides)
    return WorkerSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def worker(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    executor: PoolExecutors,
    metrics: MediaMetrics,
) -> JobWorker:
    return JobWorker(
        store=store,
        staging=staging,
        delivery=delivery,
        executor=executor,
        metrics=metrics,
        settings=settings(),
    )


@pytest.fixture
async def definitions(store: Store) -> DefinitionsManager:
    manager = DefinitionsManager(store, default_registry())
    await manager.start()
    return manager
