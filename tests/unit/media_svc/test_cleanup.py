"""Cleanup: stale jobs of active bots dead-lettered with a timeout marker, those of
stopped bots timed out in place for their next start; unreferenced files deleted."""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.common.store import JobCollection, JobStatus, Store
from services.media_svc.cleanup import Cleanup
from services.media_svc.delivery import QueueDelivery
from services.media_svc.metrics import MediaMetrics
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import BOT_NOT_ACTIVE, NOT_FOUND, UPDATED, QueuePeer


def cleanup_at(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
    offset: timedelta,
) -> Cleanup:
    return Cleanup(
        store=store,
        staging=staging,
        delivery=delivery,
        metrics=metrics,
        stale_after_seconds=3 * 3600,
        orphan_grace_seconds=3600,
        clock=lambda: datetime.now(UTC) + offset,
    )


STALE = timedelta(hours=3, seconds=1)
TIMED_OUT = "timed_out: not processed within 10800 s"


async def test_stale_jobs_of_an_active_bot_get_a_timeout_marker_and_go_to_failed(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    active = new_job(pool="Image", caption="")
    held = new_job(pool="Image", bot_id="bot-2", caption="hi")
    lost = new_job(pool="Image", bot_id="bot-3", caption="")
    fresh_soon = new_job(pool="Image")
    for job in (active, held, lost):
        assert await store.create_job(job)
        staging.path_for(job.media_processing_id).write_bytes(b"x")
    assert await store.move_bot_jobs("bot-2", JobCollection.ACTIVE, JobCollection.HOLDING) == 1
    queue_peer.servicer.answers = [UPDATED, NOT_FOUND, UPDATED]  # active, lost, held
    cleanup = cleanup_at(store, staging, delivery, metrics, STALE)
    with caplog.at_level(logging.WARNING, logger="services.media_svc.cleanup"):
        report = await cleanup.run_once()
    assert (report.stale_failed, report.stale_resolved, report.stale_timed_out) == (3, 2, 0)
    # Created after the run's cutoff: not stale.
    assert await store.create_job(fresh_soon)
    contents = sorted(c.content for c in queue_peer.servicer.calls)
    assert contents == [
        "[Image not processed: timed out]",
        "[Image not processed: timed out]",
        "[Image not processed: timed out]\nCaption: hi",
    ]
    for job in (active, held, lost):
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[0] is JobCollection.FAILED
        assert found[1].error is not None and found[1].error.startswith("stale")
        assert not await staging.exists(job.media_processing_id)
    found = await store.get_job(fresh_soon.media_processing_id)
    assert found is not None and found[0] is JobCollection.ACTIVE
    # NOT_FOUND is dead-lettered as before, with the ids an operator needs.
    [warning] = [r.getMessage() for r in caplog.records if "no placeholder" in r.getMessage()]
    assert lost.media_processing_id in warning and "bot-3" in warning
    assert lost.correspondent_id in warning


async def test_stale_jobs_of_a_stopped_bot_are_timed_out_in_place_and_kept(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    pending = new_job(pool="Image", bot_id="bot-2", caption="hi")
    running = new_job(pool="Image", bot_id="bot-2", caption="")
    finished = new_job(pool="Image", bot_id="bot-2")
    for job in (finished, running, pending):
        assert await store.create_job(job)
        staging.path_for(job.media_processing_id).write_bytes(b"x")
    done = await store.claim_job(["Image"], "w1", 30)
    assert done is not None and done.job.media_processing_id == finished.media_processing_id
    assert await store.complete_job(finished.media_processing_id, done.token, "a cat")
    claim = await store.claim_job(["Image"], "w1", 30)  # its worker is still running
    assert claim is not None and claim.job.media_processing_id == running.media_processing_id
    assert await store.move_bot_jobs("bot-2", JobCollection.ACTIVE, JobCollection.HOLDING) == 3
    queue_peer.servicer.answers = [BOT_NOT_ACTIVE]
    cleanup = cleanup_at(store, staging, delivery, metrics, STALE)

    report = await cleanup.run_once()
    assert (report.stale_timed_out, report.stale_held, report.stale_failed) == (2, 1, 0)
    assert len(queue_peer.servicer.calls) == 1  # one answer per bot and run is enough
    for job, marker in (
        (pending, "[Image not processed: timed out]\nCaption: hi"),
        (running, "[Image not processed: timed out]"),
    ):
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[0] is JobCollection.HOLDING
        assert found[1].status is JobStatus.COMPLETED
        assert (found[1].result, found[1].error) == (marker, TIMED_OUT)
        assert not await staging.exists(job.media_processing_id)
    # The worker that still holds the old claim is refused.
    assert await store.complete_job(running.media_processing_id, claim.token, "late") is None
    found = await store.get_job(finished.media_processing_id)
    assert found is not None and found[0] is JobCollection.HOLDING
    assert (found[1].result, found[1].error) == ("a cat", None)
    assert await staging.exists(finished.media_processing_id)  # the worker deletes it on delivery

    # While the bot stays stopped, later runs change nothing.
    before = {
        j.media_processing_id: j for j in await store.list_jobs("bot-2", JobCollection.HOLDING)
    }
    queue_peer.servicer.answers = [BOT_NOT_ACTIVE]
    report = await cleanup.run_once()
    assert (report.stale_held, report.stale_timed_out, report.stale_failed) == (3, 0, 0)
    after = {
        j.media_processing_id: j for j in await store.list_jobs("bot-2", JobCollection.HOLDING)
    }
    assert after == before

    # Once the bot is active again (and StartBot has not applied them yet), a run
    # delivers them and dead-letters them with their own error.
    queue_peer.servicer.calls.clear()
    report = await cleanup.run_once()
    assert (report.stale_resolved, report.stale_failed, report.stale_held) == (3, 3, 0)
    assert sorted(c.content for c in queue_peer.servicer.calls) == [
        "[Image not processed: timed out]",
        "[Image not processed: timed out]\nCaption: hi",
        "a cat",
    ]
    errors = {
        j.media_processing_id: j.error for j in await store.list_failed_jobs("bot-2", limit=10)
    }
    assert errors[pending.media_processing_id] == TIMED_OUT
    assert errors[running.media_processing_id] == TIMED_OUT
    assert (errors[finished.media_processing_id] or "").startswith("stale: completed")


async def test_kept_jobs_do_not_hide_later_stale_jobs_from_a_run(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    stopped = [new_job(pool="Image", bot_id="bot-2", has_staged_file=False) for _ in range(5)]
    running = [new_job(pool="Image", bot_id="bot-1", has_staged_file=False) for _ in range(3)]
    for job in [*stopped, *running]:  # the stopped bot's jobs are the oldest
        assert await store.create_job(job)
    for bot in ("bot-1", "bot-2"):
        await store.move_bot_jobs(bot, JobCollection.ACTIVE, JobCollection.HOLDING)

    async def by_bot(request: object) -> None:
        bot_id = getattr(request, "bot_id", "")
        queue_peer.servicer.answers = [BOT_NOT_ACTIVE if bot_id == "bot-2" else UPDATED]

    queue_peer.servicer.on_update = by_bot
    cleanup = Cleanup(
        store=store,
        staging=staging,
        delivery=delivery,
        metrics=metrics,
        stale_after_seconds=3 * 3600,
        orphan_grace_seconds=3600,
        clock=lambda: datetime.now(UTC) + STALE,
        page_size=2,
    )
    for _ in range(2):  # the second run pages over five kept jobs first
        report = await cleanup.run_once()
        assert report.stale_timed_out + report.stale_held == 5
    held = await store.list_jobs("bot-2", JobCollection.HOLDING)
    assert len(held) == 5 and all(j.error == TIMED_OUT for j in held)
    failed = await store.list_failed_jobs("bot-1", limit=10)
    assert {j.media_processing_id for j in failed} == {j.media_processing_id for j in running}


async def test_unreferenced_files_deleted_after_grace(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
) -> None:
    referenced = new_job(pool="Image")
    assert await store.create_job(referenced)
    # A failure result applied by queue_svc's StartBot: the job is failed, its file left.
    dead = new_job(pool="Image")
    assert await store.create_job(dead) and await store.fail_job(dead.media_processing_id, "x")
    orphan, young_orphan = str(uuid.uuid4()), str(uuid.uuid4())
    partial = staging.root / f"{uuid.uuid4()}.part"
    foreign = staging.root / "keep-me.txt"
    for path in (
        staging.path_for(referenced.media_processing_id),
        staging.path_for(dead.media_processing_id),
        staging.path_for(orphan),
        staging.path_for(young_orphan),
        partial,
        foreign,
    ):
        path.write_bytes(b"x")
    old = time.time() - 7200
    for path in (
        staging.path_for(referenced.media_processing_id),
        staging.path_for(dead.media_processing_id),
        staging.path_for(orphan),
        partial,
        foreign,
    ):
        os.utime(path, (old, old))
    report = await cleanup_at(store, staging, delivery, metrics, timedelta()).run_once()
    assert (report.orphans_deleted, report.partials_deleted) == (2, 1)
    assert not await staging.exists(orphan) and not partial.exists()
    assert not await staging.exists(dead.media_processing_id)
    assert await staging.exists(young_orphan)
    assert await staging.exists(referenced.media_processing_id)
    assert foreign.exists()


async def test_one_runner_across_replicas(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
) -> None:
    cleanup = cleanup_at(store, staging, delivery, metrics, timedelta())
    assert await cleanup.run_if_leader("replica-a", 60) is not None
    assert await cleanup.run_if_leader("replica-b", 60) is None
    assert await cleanup.run_if_leader("replica-a", 60) is not None
