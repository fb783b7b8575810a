"""With several queue_svc shards, every call media_svc makes for a job goes to the shard
of the job's bot: the worker's UpdateByMediaId, the requeue's activity check, and the
cleanup's deliveries (two scripted queue_svc peers on real loopback servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.common.sharding import ShardAddresses
from services.common.store import JobCollection, MediaJob, NewMediaJob, Store
from services.media_svc.cleanup import Cleanup
from services.media_svc.delivery import DeliveryStatus, QueueDelivery
from services.media_svc.metrics import MediaMetrics
from tests.helpers.shards import bot_on_shard
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import BOT_NOT_ACTIVE, QueuePeer, scripted_queue_peer

BOTS = [bot_on_shard(0, 2), bot_on_shard(1, 2)]


@pytest.fixture
async def peers() -> AsyncIterator[list[QueuePeer]]:
    async with scripted_queue_peer() as first, scripted_queue_peer() as second:
        yield [first, second]


@pytest.fixture
async def sharded(peers: list[QueuePeer], metrics: MediaMetrics) -> AsyncIterator[QueueDelivery]:
    addresses = ShardAddresses(tuple(p.address for p in peers))
    client = QueueDelivery(addresses, metrics, backoff_base=0.01, backoff_max=0.05)
    try:
        yield client
    finally:
        await client.close()


async def stored(store: Store, job: NewMediaJob) -> MediaJob:
    assert await store.create_job(job)
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    return found[1]


async def test_updates_go_to_the_bots_shard(
    store: Store, peers: list[QueuePeer], sharded: QueueDelivery
) -> None:
    jobs = [await stored(store, new_job(bot_id=bot)) for bot in BOTS for _ in range(3)]
    peers[1].servicer.default = BOT_NOT_ACTIVE
    outcomes = [await sharded.update(job, "text") for job in jobs]
    assert outcomes == [DeliveryStatus.UPDATED] * 3 + [DeliveryStatus.BOT_NOT_ACTIVE] * 3
    for shard, peer in enumerate(peers):
        assert {c.bot_id for c in peer.servicer.calls} == {BOTS[shard]}
        assert len(peer.servicer.calls) == 3


async def test_cleanup_delivers_each_stale_job_to_its_bots_shard(
    store: Store,
    staging: StagingDirectory,
    metrics: MediaMetrics,
    peers: list[QueuePeer],
    sharded: QueueDelivery,
) -> None:
    jobs = [new_job(bot_id=bot, caption="") for bot in BOTS for _ in range(2)]
    for job in jobs:
        assert await store.create_job(job)
    cleanup = Cleanup(
        store=store,
        staging=staging,
        delivery=sharded,
        metrics=metrics,
        stale_after_seconds=60,
        orphan_grace_seconds=3600,
        clock=lambda: datetime.now(UTC) + timedelta(minutes=2),
    )
    report = await cleanup.run_once()
    assert (report.stale_failed, report.stale_resolved) == (4, 4)
    for shard, peer in enumerate(peers):
        assert sorted(c.media_processing_id for c in peer.servicer.calls) == sorted(
            j.media_processing_id for j in jobs if j.bot_id == BOTS[shard]
        )
    for job in jobs:
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[0] is JobCollection.FAILED


async def test_a_shard_that_does_not_answer_backs_off_alone(
    store: Store, peers: list[QueuePeer], metrics: MediaMetrics
) -> None:
    now = [0.0]
    addresses = ShardAddresses(tuple(p.address for p in peers))
    client = QueueDelivery(
        addresses, metrics, backoff_base=4.0, backoff_max=4.0, monotonic=lambda: now[0]
    )
    try:
        healthy, down = [await stored(store, new_job(bot_id=bot)) for bot in BOTS]
        peers[1].servicer.answers = [None]
        assert await client.update(down, "text") is DeliveryStatus.UNREACHABLE
        # Backing off: answered at once, without a call, while shard 0 is served as ever.
        assert await client.update(down, "text") is DeliveryStatus.UNREACHABLE
        assert await client.update(healthy, "text") is DeliveryStatus.UPDATED
        assert (len(peers[0].servicer.calls), len(peers[1].servicer.calls)) == (1, 1)
        assert not client.reachable(down.bot_id) and client.reachable(healthy.bot_id)
        now[0] += 4.0
        assert await client.update(down, "text") is DeliveryStatus.UPDATED
        assert len(peers[1].servicer.calls) == 2
    finally:
        await client.close()


async def test_cleanup_leaves_the_jobs_of_an_unreachable_shard_for_its_next_run(
    store: Store,
    staging: StagingDirectory,
    metrics: MediaMetrics,
    peers: list[QueuePeer],
    sharded: QueueDelivery,
) -> None:
    jobs = [new_job(bot_id=bot, caption="") for bot in BOTS]
    for job in jobs:
        assert await store.create_job(job)
    peers[1].servicer.default = None  # UNAVAILABLE
    cleanup = Cleanup(
        store=store,
        staging=staging,
        delivery=sharded,
        metrics=metrics,
        stale_after_seconds=60,
        orphan_grace_seconds=3600,
        clock=lambda: datetime.now(UTC) + timedelta(minutes=2),
    )
    report = await cleanup.run_once()
    assert (report.stale_failed, report.stale_resolved, report.stale_unreachable) == (1, 1, 1)
    kept = await store.get_job(jobs[1].media_processing_id)
    assert kept is not None and kept[0] is JobCollection.ACTIVE
    failed = await store.get_job(jobs[0].media_processing_id)
    assert failed is not None and failed[0] is JobCollection.FAILED
