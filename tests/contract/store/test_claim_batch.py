"""Batch claims on every leg: `claim_jobs` takes up to a number of jobs per pool in one
call, in the claim order single claims would follow, and never one job twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import JobCollection, JobStatus, NewMediaJob, Store
from tests.helpers.store_factories import new_job

ACTIVE = JobCollection.ACTIVE


async def _created(store: Store, pools: list[str]) -> list[NewMediaJob]:
    """Jobs in the given pools whose claim order is their list order: each one's
    expected cost (claim_delay_ms) is larger than the one before's."""
    jobs = [new_job(pool=pool, claim_delay_ms=10 * i) for i, pool in enumerate(pools)]
    for job in jobs:
        assert await store.create_job(job)
    return jobs


def _ids(jobs: list[NewMediaJob]) -> list[str]:
    return [j.media_processing_id for j in jobs]


async def test_a_batch_takes_each_pools_slots_in_claim_order(store: Store) -> None:
    a1, i1, a2, i2, a3, i3 = await _created(
        store, ["audio", "image", "audio", "image", "audio", "image"]
    )
    assert await store.claim_jobs({"video": 4}, "w1", 30) == []

    batch = await store.claim_jobs({"audio": 2, "image": 5}, "w1", 30)
    # audio's two slots are spent on a1 and a2; image takes what is there.
    assert [c.job.media_processing_id for c in batch] == _ids([a1, i1, a2, i2, i3])
    for claim in batch:
        assert claim.token == 1 == claim.job.attempts == claim.job.fence
        assert claim.job.status is JobStatus.PROCESSING
        assert claim.job.claimed_by == "w1"
        assert claim.job.lease_expires_at is not None
        assert claim.job.lease_expires_at > datetime.now(UTC) + timedelta(seconds=25)

    rest = await store.claim_jobs({"audio": 3, "image": 1}, "w2", 30)
    assert [c.job.media_processing_id for c in rest] == _ids([a3])
    assert await store.claim_jobs({"audio": 3, "image": 3}, "w3", 30) == []


async def test_batches_and_single_claims_share_one_claim_order(store: Store) -> None:
    first, second, third = await _created(store, ["image", "audio", "image"])
    [claim] = await store.claim_jobs({"image": 1}, "w1", 30)
    assert claim.job.media_processing_id == first.media_processing_id
    single = await store.claim_job(["audio", "image"], "w1", 30)
    assert single is not None and single.job.media_processing_id == second.media_processing_id
    [last] = await store.claim_jobs({"audio": 1, "image": 1}, "w1", 30)
    assert last.job.media_processing_id == third.media_processing_id


async def test_concurrent_batches_never_take_a_job_twice(store: Store) -> None:
    jobs = await _created(store, ["image"] * 12 + ["audio"] * 12)
    batches = await asyncio.gather(
        *(store.claim_jobs({"image": 4, "audio": 4}, f"w{i}", 30) for i in range(5))
    )
    claimed = [c.job.media_processing_id for batch in batches for c in batch]
    assert sorted(claimed) == sorted(_ids(jobs))
    for batch in batches:
        assert sum(c.job.pool == "image" for c in batch) <= 4
        assert sum(c.job.pool == "audio" for c in batch) <= 4


@pytest.mark.parametrize(
    ("slots", "lease", "error"),
    [
        ({}, 30, "at least one pool"),
        ({"image": 0}, 30, "integer >= 1"),
        ({"image": -2}, 30, "integer >= 1"),
        ({"image": True}, 30, "integer >= 1"),
        ({"image": 1.5}, 30, "integer >= 1"),
        ({"": 1}, 30, "non-empty"),
        ({"image": 2}, 0, "lease_seconds"),
    ],
)
async def test_bad_slots_are_refused_without_a_claim(
    store: Store, slots: dict[str, int], lease: float, error: str
) -> None:
    assert await store.create_job(new_job())
    with pytest.raises(InvalidInputError, match=error):
        await store.claim_jobs(slots, "w", lease)
    [pending] = await store.list_jobs("bot-1", ACTIVE)
    assert pending.status is JobStatus.PENDING and pending.attempts == 0
