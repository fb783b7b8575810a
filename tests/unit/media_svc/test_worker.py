"""The job lifecycle against the real SQLite store and a scripted queue peer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc

from services.common.store import (
    BotConfig,
    ClaimedJob,
    JobCollection,
    JobStatus,
    NewMediaJob,
    Store,
)
from services.media_svc.definitions import ActivePool, DefinitionsManager, build
from services.media_svc.delivery import QueueDelivery
from services.media_svc.execution import PoolExecutors
from services.media_svc.inputs import BotLanguages
from services.media_svc.metrics import MediaMetrics
from services.media_svc.processors.base import ProcessingSuccess
from services.media_svc.processors.registry import (
    ProcessorRegistry,
    builtin_types,
    default_registry,
)
from services.media_svc.worker import JobWorker, compose_content
from tests.helpers.processors import ProbeProcessor
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import BOT_NOT_ACTIVE, NOT_FOUND, UPDATED, QueuePeer, settings


def stub_pool(**options: Any) -> ActivePool:
    document = {
        "pools": [
            {
                "name": "Image",
                "processor": "stub",
                "options": {"text": "a cat", **options},
                "fallback": True,
            }
        ]
    }
    pool = build(document, default_registry()).pool("Image")
    assert pool is not None
    return pool


async def create(store: Store, staging: StagingDirectory, **overrides: Any) -> NewMediaJob:
    job = new_job(**{"pool": "Image", "caption": "my cat", **overrides})
    assert await store.create_job(job)
    if job.has_staged_file:
        staging.path_for(job.media_processing_id).write_bytes(b"\xff\xd8 fake jpeg")
    return job


async def claim_and_run(store: Store, worker: JobWorker, pool: ActivePool) -> str:
    claimed = await store.claim_job(["Image"], "test-worker", 5.0)
    assert claimed is not None
    return await worker.run(pool, claimed)


async def claim_when_due(store: Store, within: float = 5.0, lease: float = 5.0) -> ClaimedJob:
    """The next claim, once a released job's backoff has passed."""
    async with asyncio.timeout(within):
        while (claimed := await store.claim_job(["Image"], "test-worker", lease)) is None:
            await store.wait_for_jobs(0.02)
    return claimed


async def run_when_due(store: Store, worker: JobWorker, pool: ActivePool) -> str:
    return await worker.run(pool, await claim_when_due(store))


def test_content_format() -> None:
    assert compose_content("a cat", "  my cat ") == "a cat\nCaption: my cat"
    assert compose_content("[Unsupported media: application/zip]", "") == (
        "[Unsupported media: application/zip]"
    )


async def test_success_delivers_then_deletes_job_and_file(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "delivered"
    [call] = queue_peer.servicer.calls
    assert (call.bot_id, call.correspondent_id, call.media_processing_id) == (
        job.bot_id,
        job.correspondent_id,
        job.media_processing_id,
    )
    assert call.content == "a cat\nCaption: my cat"
    assert await store.get_job(job.media_processing_id) is None
    assert not await staging.exists(job.media_processing_id)


async def test_failure_marker_resolves_placeholder_and_moves_job_to_failed(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    queue_peer: QueuePeer,
    definitions: DefinitionsManager,
) -> None:
    job = await create(
        store,
        staging,
        route="corrupt|MEDIA_KIND_IMAGE|image/jpeg",
        pool="Corrupt",
        has_staged_file=False,
    )
    claimed = await store.claim_job(["Corrupt"], "w", 5.0)
    assert claimed is not None
    pool = definitions.current.pool("Corrupt")
    assert pool is not None
    assert await worker.run(pool, claimed) == "failed"
    assert queue_peer.servicer.calls[0].content == (
        "[Corrupted image: could not be decoded]\nCaption: my cat"
    )
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    assert found[0] is JobCollection.FAILED
    assert found[1].error == "corrupt"


async def test_nodes_reason_reaches_the_failed_job_but_not_the_chat(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    queue_peer: QueuePeer,
    definitions: DefinitionsManager,
) -> None:
    corrupt = await create(
        store,
        staging,
        route="corrupt|MEDIA_KIND_IMAGE|image/jpeg",
        pool="Corrupt",
        has_staged_file=False,
        condition_detail="download failed: HTTP 410 after re-upload",
    )
    over_quota = await create(
        store,
        staging,
        route="over_quota|MEDIA_KIND_VIDEO|video/mp4",
        media_kind="MEDIA_KIND_VIDEO",
        pool="Unsupported",
        has_staged_file=False,
        condition_detail="staging quota of bot-1 reached (1.0 GB)",
    )
    for name in ("Corrupt", "Unsupported"):
        claimed = await store.claim_job([name], "w", 5.0)
        assert claimed is not None
        pool = definitions.current.pool(name)
        assert pool is not None
        assert await worker.run(pool, claimed) == "failed"
    assert [c.content for c in queue_peer.servicer.calls] == [
        "[Corrupted image: could not be decoded]\nCaption: my cat",
        "[Video not received: the bot's media storage is full]\nCaption: my cat",
    ]
    failed = {j.media_processing_id: j.error for j in await store.list_failed_jobs()}
    assert failed == {
        corrupt.media_processing_id: "corrupt: download failed: HTTP 410 after re-upload",
        over_quota.media_processing_id: "over_quota: staging quota of bot-1 reached (1.0 GB)",
    }


async def test_bot_not_active_leaves_completed_result(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    queue_peer.servicer.default = BOT_NOT_ACTIVE
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "held"
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    collection, stored = found
    assert collection is JobCollection.ACTIVE
    assert stored.status is JobStatus.COMPLETED
    assert stored.result == "a cat\nCaption: my cat"
    assert await staging.exists(job.media_processing_id)


async def test_not_found_is_retried_then_left_for_recovery(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    queue_peer.servicer.default = NOT_FOUND
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "undelivered"
    assert len(queue_peer.servicer.calls) == 4
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[1].status is JobStatus.COMPLETED


async def test_not_found_then_updated_after_recovery_race(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    queue_peer.servicer.answers = [NOT_FOUND, UPDATED]
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "delivered"
    assert await store.get_job(job.media_processing_id) is None


async def test_unreachable_queue_frees_the_slot_and_the_result_is_redelivered(
    store: Store,
    staging: StagingDirectory,
    queue_peer: QueuePeer,
    executor: PoolExecutors,
    metrics: MediaMetrics,
) -> None:
    now = [0.0]
    delivery = QueueDelivery(
        queue_peer.address, metrics, backoff_base=1.0, backoff_max=1.0, monotonic=lambda: now[0]
    )
    worker = JobWorker(
        store=store,
        staging=staging,
        delivery=delivery,
        executor=executor,
        metrics=metrics,
        settings=settings(),
    )
    queue_peer.servicer.answers = [None]
    job = await create(store, staging)
    # One attempt inside the slot, then the slot is free: the result stays persisted.
    assert await claim_and_run(store, worker, stub_pool()) == "deferred"
    assert len(queue_peer.servicer.calls) == 1
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.ACTIVE
    assert (found[1].status, found[1].result) == (JobStatus.COMPLETED, "a cat\nCaption: my cat")
    assert await staging.exists(job.media_processing_id)
    # The shard is left alone for its backoff: nothing is sent meanwhile.
    assert not delivery.reachable(job.bot_id)
    assert await worker.redeliver_stranded(older_than_seconds=0) == 0
    assert len(queue_peer.servicer.calls) == 1
    now[0] += 1.0  # past the backoff (at most its maximum)
    assert delivery.reachable(job.bot_id)
    assert await worker.redeliver_stranded(older_than_seconds=0) == 1
    assert [c.content for c in queue_peer.servicer.calls] == ["a cat\nCaption: my cat"] * 2
    assert await store.get_job(job.media_processing_id) is None
    assert not await staging.exists(job.media_processing_id)
    await delivery.close()


async def test_a_refused_result_resolves_the_placeholder_with_the_failure_marker(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    queue_peer.servicer.answers = [grpc.StatusCode.INVALID_ARGUMENT, UPDATED]
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "failed"
    assert [c.content for c in queue_peer.servicer.calls] == [
        "a cat\nCaption: my cat",
        "[Image could not be processed]",
    ]
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    assert found[1].error is not None and "INVALID_ARGUMENT" in found[1].error
    assert not await staging.exists(job.media_processing_id)


async def test_a_refused_result_whose_placeholder_is_gone_is_dead_lettered(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    queue_peer.servicer.answers = [grpc.StatusCode.NOT_FOUND, NOT_FOUND]
    job = await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "failed"
    assert len(queue_peer.servicer.calls) == 2
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    assert found[1].error is not None and found[1].error.startswith("delivery rejected")


async def test_result_is_persisted_before_delivery(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    seen: list[tuple[JobCollection, JobStatus, str | None]] = []

    async def observe(request: Any) -> None:
        found = await store.get_job(request.media_processing_id)
        assert found is not None
        seen.append((found[0], found[1].status, found[1].result))

    queue_peer.servicer.on_update = observe
    await create(store, staging)
    assert await claim_and_run(store, worker, stub_pool()) == "delivered"
    assert seen == [(JobCollection.ACTIVE, JobStatus.COMPLETED, "a cat\nCaption: my cat")]


async def test_transient_errors_retry_with_backoff_then_fail(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    pool = stub_pool(transient_failures=5)
    for _ in range(2):
        before = datetime.now(UTC)
        assert await run_when_due(store, worker, pool) == "retried"
        found = await store.get_job(job.media_processing_id)
        assert found is not None
        assert found[1].status is JobStatus.PENDING
        assert found[1].error is not None and found[1].error.startswith("transient")
        # Not claimable before the backoff (at least half its base, 0.01 s) has passed.
        assert found[1].available_at >= before + timedelta(seconds=0.005)
    assert queue_peer.servicer.calls == []
    # The third attempt is the last (MEDIA_MAX_ATTEMPTS=3): the failure marker goes out.
    assert await run_when_due(store, worker, pool) == "failed"
    assert queue_peer.servicer.calls[0].content == (
        "[Image could not be processed]\nCaption: my cat"
    )
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    assert not await staging.exists(job.media_processing_id)


async def test_transient_error_then_success(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    pool = stub_pool(transient_failures=1)
    assert await claim_and_run(store, worker, pool) == "retried"
    assert await run_when_due(store, worker, pool) == "delivered"
    assert [c.content for c in queue_peer.servicer.calls] == ["a cat\nCaption: my cat"]
    assert await store.get_job(job.media_processing_id) is None


async def test_lost_lease_cannot_persist_or_deliver(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    stale = await store.claim_job(["Image"], "dead-worker", 0.05)
    assert stale is not None
    await asyncio.sleep(0.1)
    fresh = await store.claim_job(["Image"], "live-worker", 5.0)
    assert fresh is not None and fresh.token == stale.token + 1
    assert await worker.run(stub_pool(), stale) == "lease_lost"
    assert queue_peer.servicer.calls == []
    # The live claim still owns the job and its file.
    assert await staging.exists(job.media_processing_id)
    assert await worker.run(stub_pool(), fresh) == "delivered"
    assert len(queue_peer.servicer.calls) == 1


async def test_dead_lettered_while_processing_keeps_no_result(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    claimed = await store.claim_job(["Image"], "w", 5.0)
    assert claimed is not None
    running = asyncio.create_task(worker.run(stub_pool(delay_seconds=0.2), claimed))
    await asyncio.sleep(0.05)
    assert await store.fail_job(job.media_processing_id, "stale: cleanup")
    assert await running == "lease_lost"
    assert queue_peer.servicer.calls == []
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED


async def test_a_missing_staged_file_is_retried_then_a_failure_marker(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    await staging.files.delete(job.media_processing_id)
    for _ in range(2):  # MEDIA_MAX_ATTEMPTS=3: two retries with backoff
        assert await run_when_due(store, worker, stub_pool()) == "retried"
        assert queue_peer.servicer.calls == []
    assert await run_when_due(store, worker, stub_pool()) == "failed"
    [call] = queue_peer.servicer.calls
    assert call.content == "[Image could not be processed: file missing]\nCaption: my cat"
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    assert found[1].attempts == 3


async def test_a_staged_file_that_appears_late_is_processed(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    await staging.files.delete(job.media_processing_id)
    assert await claim_and_run(store, worker, stub_pool()) == "retried"
    # The shared volume shows the file now.
    staging.path_for(job.media_processing_id).write_bytes(b"\xff\xd8 fake jpeg")
    assert await run_when_due(store, worker, stub_pool()) == "delivered"
    assert [c.content for c in queue_peer.servicer.calls] == ["a cat\nCaption: my cat"]


class PausableRenewals:
    """The real store, except that lease renewals wait while `paused` is clear: a worker
    stalled (a long GC pause, a partition) while its job runs on."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.resumed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def renew_lease(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        await self.resumed.wait()
        return await self._store.renew_lease(media_processing_id, token, lease_seconds)


async def test_a_lost_lease_stops_the_run_and_only_the_new_claims_result_is_kept(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    queue_peer: QueuePeer,
    delivery: QueueDelivery,
    executor: PoolExecutors,
    metrics: MediaMetrics,
) -> None:
    job = await create(store, staging)
    stalled_store = PausableRenewals(store)
    stalled = JobWorker(
        store=cast(Store, stalled_store),
        staging=staging,
        delivery=delivery,
        executor=executor,
        metrics=metrics,
        settings=settings(lease_seconds=1.0),
    )
    first_claim = await store.claim_job(["Image"], "stalled-worker", 1.0)
    assert first_claim is not None
    # A run far longer than the test: only the lost lease can end it.
    first = asyncio.create_task(
        stalled.run(stub_pool(text="first result", delay_seconds=3600), first_claim)
    )
    # Its renewals hang, so its lease expires and another worker claims the job.
    second_claim = await claim_when_due(store)
    assert second_claim.token == first_claim.token + 1
    assert not first.done()
    stalled_store.resumed.set()  # its next renewal is refused by the fence
    assert await asyncio.wait_for(first, 5) == "lease_lost"
    assert metrics.leases_lost.labels("Image")._value.get() == 1
    assert queue_peer.servicer.calls == []
    assert await staging.exists(job.media_processing_id)
    assert await worker.run(stub_pool(text="second result"), second_claim) == "delivered"
    assert [c.content for c in queue_peer.servicer.calls] == ["second result\nCaption: my cat"]
    assert await store.get_job(job.media_processing_id) is None


def probe_pool(**pool_settings: Any) -> ActivePool:
    document = {
        "pools": [{"name": "Image", "processor": "probe", "fallback": True, **pool_settings}]
    }
    registry = ProcessorRegistry({**builtin_types(), "probe": ProbeProcessor})
    pool = build(document, registry).pool("Image")
    assert pool is not None
    return pool


async def test_a_symlinked_staged_file_is_refused_unfollowed_and_removed(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    queue_peer: QueuePeer,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the bot")
    job = await create(store, staging)
    link = staging.path_for(job.media_processing_id)
    link.unlink()
    link.symlink_to(secret)
    assert await claim_and_run(store, worker, stub_pool()) == "failed"
    [call] = queue_peer.servicer.calls
    assert call.content == "[Image could not be processed]\nCaption: my cat"
    assert not link.exists() and not link.is_symlink()
    assert secret.read_text() == "not for the bot"
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    assert found[1].attempts == 1  # refused at once, never retried
    assert found[1].error is not None and found[1].error.startswith("refused")


async def test_a_file_over_the_pools_size_limit_is_a_marker_without_processing(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    staging.path_for(job.media_processing_id).write_bytes(b"x" * 2048)
    pool = probe_pool(options={"max_file_bytes": 1024})
    assert await claim_and_run(store, worker, pool) == "failed"
    [call] = queue_peer.servicer.calls
    assert call.content.startswith("[Image not processed: file too large")
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[1].error is not None
    assert found[1].error.startswith("too_large")


async def test_processor_gets_size_sanitized_name_and_the_bots_languages(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    await store.put_bot_config(BotConfig("bot-1", extra={"languages": ["DE", "en", "de"]}))
    await create(store, staging, original_filename="../../etc/pa\x00ss\nwd.pdf")
    assert await claim_and_run(store, worker, probe_pool()) == "delivered"
    [call] = queue_peer.servicer.calls
    report = dict(part.split("=", 1) for part in call.content.split("\n")[0].split())
    assert report["size"] == str(len(b"\xff\xd8 fake jpeg"))
    assert report["name"] == "passwd.pdf"
    assert report["languages"] == "de,en"


async def test_a_malformed_languages_setting_is_ignored(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    await store.put_bot_config(BotConfig("bot-1", extra={"languages": [1, "english!"]}))
    await create(store, staging)
    assert await claim_and_run(store, worker, probe_pool()) == "delivered"
    assert "languages=-" in queue_peer.servicer.calls[0].content


async def test_per_pool_max_attempts_overrides_the_default(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    await create(store, staging)
    document = {
        "pools": [
            {
                "name": "Image",
                "processor": "stub",
                "fallback": True,
                "max_attempts": 1,
                "options": {"transient_failures": 5},
            }
        ]
    }
    pool = build(document, default_registry()).pool("Image")
    assert pool is not None
    assert await claim_and_run(store, worker, pool) == "failed"


async def test_redelivery_sweep_delivers_stranded_results(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    claimed = await store.claim_job(["Image"], "w", 5.0)
    assert claimed is not None
    # A crash right after persisting: the completed result sits in ACTIVE.
    transcript = ProcessingSuccess("done", "pt", 0.4217)
    assert transcript.media_result() == '{"language": "pt", "languageProbability": 0.4217}'
    assert (
        await store.complete_job(
            job.media_processing_id, claimed.token, "done", None, transcript.media_result()
        )
        is not None
    )
    await asyncio.sleep(0.05)
    assert await worker.redeliver_stranded(older_than_seconds=0.01) == 1
    assert [c.content for c in queue_peer.servicer.calls] == ["done"]
    # The typed values persisted with the result go out with it.
    [call] = queue_peer.servicer.calls
    assert (call.media_result.language, call.media_result.language_probability) == ("pt", 0.4217)
    assert await store.get_job(job.media_processing_id) is None
    assert not await staging.exists(job.media_processing_id)


async def test_redelivery_sweep_takes_only_results_completed_before_the_bound(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    stranded = await create(store, staging)
    claimed = await store.claim_job(["Image"], "w", 5.0)
    assert claimed is not None
    assert await store.complete_job(stranded.media_processing_id, claimed.token, "old")
    await asyncio.sleep(0.3)
    recent = await create(store, staging)
    waiting = await create(store, staging)
    claimed = await store.claim_job(["Image"], "w", 5.0)
    assert claimed is not None and claimed.job.media_processing_id == recent.media_processing_id
    # Its worker is delivering this one right now: the sweep must leave it alone.
    assert await store.complete_job(recent.media_processing_id, claimed.token, "new")

    assert await worker.redeliver_stranded(older_than_seconds=0.2) == 1
    assert [c.content for c in queue_peer.servicer.calls] == ["old"]
    assert await store.get_job(stranded.media_processing_id) is None
    for job, status in ((recent, JobStatus.COMPLETED), (waiting, JobStatus.PENDING)):
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[1].status is status
    assert await worker.redeliver_stranded(older_than_seconds=0.2) == 0


async def test_redelivery_sweep_pages_past_results_held_for_inactive_bots(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    held = [await create(store, staging, bot_id="sleeping-bot") for _ in range(5)]
    stranded = await create(store, staging)
    for _ in range(6):
        claimed = await store.claim_job(["Image"], "w", 5.0)
        assert claimed is not None
        job_id = claimed.job.media_processing_id
        assert await store.complete_job(job_id, claimed.token, f"result {job_id}")
        await asyncio.sleep(0.003)  # distinct updated_at: the held results come first
    queue_peer.servicer.answers = [BOT_NOT_ACTIVE]
    await asyncio.sleep(0.05)

    # Pages of two: without paging past the held results the stranded one is never seen.
    assert await worker.redeliver_stranded(older_than_seconds=0.01, page_size=2) == 2
    delivered = [c.media_processing_id for c in queue_peer.servicer.calls]
    # One question per inactive bot, then the stranded result of the active bot.
    assert delivered == [held[0].media_processing_id, stranded.media_processing_id]
    assert await store.get_job(stranded.media_processing_id) is None
    for job in held:
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[1].status is JobStatus.COMPLETED


async def test_requeued_job_gets_a_fresh_set_of_attempts(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    job = await create(store, staging)
    job_id = job.media_processing_id
    # Three claims (MEDIA_MAX_ATTEMPTS=3) whose workers died, then the dead letter.
    for _ in range(3):
        claimed = await store.claim_job(["Image"], "dying-worker", 5.0)
        assert claimed is not None
        assert await store.release_job(job_id, claimed.token, "died", datetime.now(UTC))
    assert await store.fail_job(job_id, "gave up")
    assert await store.requeue_failed_job(job_id, JobCollection.ACTIVE)

    # The token (4) is beyond MEDIA_MAX_ATTEMPTS, but this is the first attempt of the
    # new cycle: a transient error is retried, and the next attempt succeeds.
    pool = stub_pool(transient_failures=1)
    claimed = await store.claim_job(["Image"], "test-worker", 5.0)
    assert claimed is not None and (claimed.token, claimed.job.attempts) == (4, 1)
    assert await worker.run(pool, claimed) == "retried"
    assert await run_when_due(store, worker, pool) == "delivered"
    assert [c.content for c in queue_peer.servicer.calls] == ["a cat\nCaption: my cat"]
    assert await store.get_job(job_id) is None


async def test_bot_languages_are_read_once_per_ttl() -> None:
    reads: list[str] = []
    now = [100.0]

    async def read(bot_id: str) -> BotConfig | None:
        reads.append(bot_id)
        return BotConfig(bot_id, extra={"languages": ["de"]})

    languages = BotLanguages(read, ttl=10.0, clock=lambda: now[0])
    assert (await languages.of("bot-1")).languages == ("de",)
    assert (await languages.of("bot-1")).languages == ("de",)
    assert reads == ["bot-1"]
    now[0] += 10.5
    assert (await languages.of("bot-1")).languages == ("de",)
    assert reads == ["bot-1", "bot-1"]
