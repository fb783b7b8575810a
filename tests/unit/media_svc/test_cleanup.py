"""Cleanup: stale jobs dead-lettered with a timeout marker, unreferenced files deleted."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from services.common.store import JobCollection, Store
from services.media_svc.cleanup import Cleanup
from services.media_svc.delivery import QueueDelivery
from services.media_svc.metrics import MediaMetrics
from services.media_svc.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import BOT_NOT_ACTIVE, QueuePeer


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


async def test_stale_jobs_get_a_timeout_marker_and_go_to_failed(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    active = new_job(pool="Image", caption="")
    held = new_job(pool="Image", bot_id="bot-2", caption="hi")
    fresh_soon = new_job(pool="Image")
    for job in (active, held):
        assert await store.create_job(job)
        staging.path_for(job.media_processing_id).write_bytes(b"x")
    assert await store.move_bot_jobs("bot-2", JobCollection.ACTIVE, JobCollection.HOLDING) == 1
    queue_peer.servicer.answers = [BOT_NOT_ACTIVE]  # whichever comes first
    cleanup = cleanup_at(store, staging, delivery, metrics, timedelta(hours=3, seconds=1))
    # Created after the run's cutoff: not stale.
    report = await cleanup.run_once()
    assert report.stale_failed == 2
    assert await store.create_job(fresh_soon)
    contents = sorted(c.content for c in queue_peer.servicer.calls)
    assert contents == [
        "[Image not processed: timed out]",
        "[Image not processed: timed out]\nCaption: hi",
    ]
    for job in (active, held):
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[0] is JobCollection.FAILED
        assert found[1].error is not None and found[1].error.startswith("stale")
        assert not staging.exists(job.media_processing_id)
    found = await store.get_job(fresh_soon.media_processing_id)
    assert found is not None and found[0] is JobCollection.ACTIVE


async def test_unreferenced_files_deleted_after_grace(
    store: Store,
    staging: StagingDirectory,
    delivery: QueueDelivery,
    metrics: MediaMetrics,
) -> None:
    referenced = new_job(pool="Image")
    assert await store.create_job(referenced)
    orphan, young_orphan = str(uuid.uuid4()), str(uuid.uuid4())
    partial = staging.root / f"{uuid.uuid4()}.part"
    foreign = staging.root / "keep-me.txt"
    for path in (
        staging.path_for(referenced.media_processing_id),
        staging.path_for(orphan),
        staging.path_for(young_orphan),
        partial,
        foreign,
    ):
        path.write_bytes(b"x")
    old = time.time() - 7200
    for path in (
        staging.path_for(referenced.media_processing_id),
        staging.path_for(orphan),
        partial,
        foreign,
    ):
        os.utime(path, (old, old))
    report = await cleanup_at(store, staging, delivery, metrics, timedelta()).run_once()
    assert (report.orphans_deleted, report.partials_deleted) == (1, 1)
    assert not staging.exists(orphan) and not partial.exists()
    assert staging.exists(young_orphan)
    assert staging.exists(referenced.media_processing_id)
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
