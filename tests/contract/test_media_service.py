"""MediaService through a real channel against the real servicer and SQLite store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatbot.common.v1 import message_pb2
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc

from services.common.store import JobCollection, Store, StoreConfig, open_store
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.delivery import QueueDelivery
from services.media_svc.execution import PoolExecutors
from services.media_svc.metrics import MediaMetrics
from services.media_svc.operations import MediaOperations
from services.media_svc.pool import PoolSet
from services.media_svc.processors import default_registry
from services.media_svc.server import grpc_edge
from services.media_svc.servicer import MediaServicer
from services.media_svc.worker import JobWorker, WorkerSettings
from tests.helpers.grpc_harness import serve_on_loopback
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job


@dataclass
class Env:
    stub: media_service_pb2_grpc.MediaServiceAsyncStub
    store: Store
    staging: StagingDirectory


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "s.sqlite3"))
    staging = StagingDirectory(tmp_path / "staging", store)
    metrics = MediaMetrics()
    # A requeue picks its collection by the registry queue_svc's StartBot writes.
    assert await store.set_bot_active("bot-1", True)
    try:
        delivery = QueueDelivery("127.0.0.1:9", metrics)  # nothing is delivered here
        definitions = DefinitionsManager(store, default_registry())
        await definitions.start()
        executor = PoolExecutors()
        worker = JobWorker(
            store=store,
            staging=staging,
            delivery=delivery,
            executor=executor,
            metrics=metrics,
            settings=WorkerSettings("w", 5, 0.01, 0.02),
        )
        pools = PoolSet(
            store=store,
            worker=worker,
            metrics=metrics,
            worker_id="w",
            lease_seconds=5,
            poll_fallback_seconds=1,
        )
        pools.apply(definitions.current)
        operations = MediaOperations(
            store=store, definitions=definitions, pools=pools, staging=staging
        )
        async with serve_on_loopback(
            lambda s: media_service_pb2_grpc.add_MediaServiceServicer_to_server(
                MediaServicer(operations), s
            ),
            interceptors=[grpc_edge(lambda *_: None)],
        ) as channel:
            yield Env(media_service_pb2_grpc.MediaServiceStub(channel), store, staging)
        await delivery.close()
    finally:
        await store.close()


async def test_get_pool_stats_lists_every_pool_in_definition_order(env: Env) -> None:
    for _ in range(3):
        assert await env.store.create_job(new_job(pool="Audio"))
    response = await env.stub.GetPoolStats(media_service_pb2.GetPoolStatsRequest())
    names = [p.pool for p in response.pools]
    assert names == ["Image", "Sticker", "Audio", "Video", "Document", "Corrupt", "Unsupported"]
    audio = response.pools[2]
    assert (audio.pending, audio.in_flight, audio.concurrency, audio.processor) == (
        3,
        0,
        1,
        "audio",
    )
    assert audio.oldest_pending_age_seconds >= 0
    assert response.pools[0].pending == 0


async def _failed(env: Env, **overrides: object) -> str:
    job = new_job(pool="Image", **overrides)
    assert await env.store.create_job(job)
    assert await env.store.fail_job(job.media_processing_id, "corrupt")
    return job.media_processing_id


async def test_list_failed_jobs_newest_first_and_by_bot(env: Env) -> None:
    first = await _failed(env, has_staged_file=False)
    second = await _failed(env, has_staged_file=False, bot_id="bot-2")
    listed = await env.stub.ListFailedJobs(media_service_pb2.ListFailedJobsRequest())
    assert [j.media_processing_id for j in listed.jobs] == [second, first]
    job = listed.jobs[1]
    assert job.error == "corrupt"
    assert job.media_kind == message_pb2.MEDIA_KIND_IMAGE
    assert job.HasField("failed_at") and job.HasField("created_at")
    only = await env.stub.ListFailedJobs(media_service_pb2.ListFailedJobsRequest(bot_id="bot-2"))
    assert [j.media_processing_id for j in only.jobs] == [second]
    limited = await env.stub.ListFailedJobs(media_service_pb2.ListFailedJobsRequest(limit=1))
    assert len(limited.jobs) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.ListFailedJobs(media_service_pb2.ListFailedJobsRequest(bot_id=""))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_requeue_into_active_or_holding(env: Env) -> None:
    active_bot = await _failed(env, has_staged_file=False)
    stopped_bot = await _failed(env, has_staged_file=False, bot_id="bot-stopped")
    response = await env.stub.RequeueFailedJob(
        media_service_pb2.RequeueFailedJobRequest(media_processing_id=active_bot)
    )
    assert response.collection == "active"
    found = await env.store.get_job(active_bot)
    assert found is not None and found[0] is JobCollection.ACTIVE and found[1].attempts == 0
    response = await env.stub.RequeueFailedJob(
        media_service_pb2.RequeueFailedJobRequest(media_processing_id=stopped_bot)
    )
    assert response.collection == "holding"


async def test_requeue_errors(env: Env) -> None:
    staged = await _failed(env)
    cases = [
        ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
        (staged, grpc.StatusCode.FAILED_PRECONDITION),  # its staged file is gone
    ]
    for media_id, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.RequeueFailedJob(
                media_service_pb2.RequeueFailedJobRequest(media_processing_id=media_id)
            )
        assert caught.value.code() is code, media_id
        assert caught.value.details()
    # Nothing changed.
    found = await env.store.get_job(staged)
    assert found is not None and found[0] is JobCollection.FAILED
    # A job that is not failed is NOT_FOUND for requeue.
    live = new_job(pool="Image")
    assert await env.store.create_job(live)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.RequeueFailedJob(
            media_service_pb2.RequeueFailedJobRequest(media_processing_id=live.media_processing_id)
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    # With the file staged again, the staged job can be requeued.
    env.staging.path_for(staged).write_bytes(b"x")
    response = await env.stub.RequeueFailedJob(
        media_service_pb2.RequeueFailedJobRequest(media_processing_id=staged)
    )
    assert response.collection == "active"
