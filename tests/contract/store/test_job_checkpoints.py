"""A job done in parts (long audio, chunk by chunk) on every leg: its progress is saved
under the claim's fence, survives a lost lease and every move, and the job gives its
slot back only to a cheaper job of its own pool that would be claimed before it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import (
    MAX_CLAIM_DELAY_MS,
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    Store,
)
from tests.helpers.store_factories import new_job, now_ms

ACTIVE, HOLDING = JobCollection.ACTIVE, JobCollection.HOLDING


def _progress(offset: int) -> str:
    return json.dumps({"offset": offset, "texts": ["one"] * offset})


async def _claim(store: Store, pool: str = "audio") -> ClaimedJob:
    claim = await store.claim_job([pool], "w", 30)
    assert claim is not None
    return claim


async def _stored(store: Store, media_processing_id: str) -> tuple[JobCollection, MediaJob]:
    found = await store.get_job(media_processing_id)
    assert found is not None
    return found


async def test_a_checkpoint_is_saved_and_read_back_by_the_next_claim(store: Store) -> None:
    job = new_job(pool="audio", claim_delay_ms=10_000)
    assert await store.create_job(job)
    claim = await _claim(store)
    assert claim.job.checkpoint is None
    job_id = job.media_processing_id

    saved = await store.checkpoint_job(job_id, claim.token, _progress(1))
    assert saved is CheckpointOutcome.KEPT
    again = await store.checkpoint_job(job_id, claim.token, _progress(2), remaining_delay_ms=5_000)
    # Nothing else waits: the job stays this worker's.
    assert again is CheckpointOutcome.KEPT
    where, stored = await _stored(store, job_id)
    assert where is ACTIVE and stored.status is JobStatus.PROCESSING
    assert stored.checkpoint == _progress(2)
    assert stored.fence == claim.token and stored.attempts == 1

    # A crash: the lease runs out and the next claim resumes from the checkpoint.
    assert await store.release_job(job_id, claim.token, "crash", stored.updated_at)
    resumed = await _claim(store)
    assert resumed.job.media_processing_id == job_id
    assert resumed.job.checkpoint == _progress(2)


async def test_a_stale_token_saves_nothing(store: Store) -> None:
    job = new_job(pool="audio")
    assert await store.create_job(job)
    first = await _claim(store)
    job_id = job.media_processing_id
    assert await store.checkpoint_job(job_id, first.token, _progress(1)) is CheckpointOutcome.KEPT
    assert await store.release_job(job_id, first.token, "lease lost", first.job.created_at)
    second = await _claim(store)

    late = await store.checkpoint_job(job_id, first.token, _progress(5), remaining_delay_ms=0)
    assert late is CheckpointOutcome.LOST
    _, stored = await _stored(store, job_id)
    assert stored.checkpoint == _progress(1)
    assert stored.status is JobStatus.PROCESSING and stored.fence == second.token
    missing = new_job(pool="audio").media_processing_id
    assert await store.checkpoint_job(missing, 1, _progress(1)) is CheckpointOutcome.LOST


async def test_a_cheaper_waiting_job_takes_the_slot_and_the_long_one_resumes_after_it(
    store: Store,
) -> None:
    long = new_job(pool="audio", claim_delay_ms=20_000)
    assert await store.create_job(long)
    claim = await _claim(store)
    short = new_job(pool="audio", claim_delay_ms=500)
    assert await store.create_job(short)
    long_id = long.media_processing_id

    before = now_ms()
    outcome = await store.checkpoint_job(long_id, claim.token, _progress(1), 15_000)
    after = now_ms()
    assert outcome is CheckpointOutcome.YIELDED
    where, stored = await _stored(store, long_id)
    assert where is ACTIVE and stored.status is JobStatus.PENDING
    assert stored.claimed_by is None and stored.lease_expires_at is None
    assert stored.checkpoint == _progress(1)
    # Giving the slot back is not an attempt: a long note is not failed for its length.
    assert stored.attempts == 0
    window = timedelta(milliseconds=15_000)
    assert before + window <= stored.claim_at <= after + window
    assert before <= stored.available_at <= after

    assert (await _claim(store)).job.media_processing_id == short.media_processing_id
    resumed = await _claim(store)
    assert resumed.job.media_processing_id == long_id
    assert resumed.job.checkpoint == _progress(1) and resumed.token == claim.token + 1
    assert resumed.job.attempts == 1


async def test_the_slot_is_kept_when_no_waiting_job_is_cheaper_or_claimable_or_in_the_pool(
    store: Store,
) -> None:
    long = new_job(pool="audio", claim_delay_ms=20_000)
    assert await store.create_job(long)
    claim = await _claim(store)
    long_id = long.media_processing_id
    # Costlier than the work left; in another pool; backing off after a failure.
    costlier = new_job(pool="audio", claim_delay_ms=9_000)
    elsewhere = new_job(pool="image", claim_delay_ms=0)
    backing_off = new_job(pool="audio", claim_delay_ms=0)
    for job in (costlier, elsewhere, backing_off):
        assert await store.create_job(job)
    other = await _claim(store)
    assert other.job.media_processing_id == backing_off.media_processing_id
    retry_at = other.job.created_at + timedelta(seconds=60)
    assert await store.release_job(backing_off.media_processing_id, other.token, "x", retry_at)

    outcome = await store.checkpoint_job(long_id, claim.token, _progress(1), 5_000)
    assert outcome is CheckpointOutcome.KEPT
    _, stored = await _stored(store, long_id)
    assert stored.status is JobStatus.PROCESSING and stored.checkpoint == _progress(1)
    # Without a delay, the job never yields, whatever waits.
    cheap = new_job(pool="audio", claim_delay_ms=0)
    assert await store.create_job(cheap)
    assert await store.checkpoint_job(long_id, claim.token, _progress(2)) is CheckpointOutcome.KEPT


async def test_a_checkpoint_goes_along_with_every_move(store: Store) -> None:
    job = new_job(pool="audio", bot_id="bot-1")
    assert await store.create_job(job)
    claim = await _claim(store)
    job_id = job.media_processing_id
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 1
    # A held job has nothing to yield to: nobody claims in HOLDING.
    held = await store.checkpoint_job(job_id, claim.token, _progress(3), remaining_delay_ms=0)
    assert held is CheckpointOutcome.KEPT
    assert await store.release_job(job_id, claim.token, "shutdown", claim.job.created_at)
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 1
    where, stored = await _stored(store, job_id)
    assert where is ACTIVE and stored.checkpoint == _progress(3)


async def test_bad_checkpoints_are_refused_and_change_nothing(store: Store) -> None:
    job = new_job(pool="audio")
    assert await store.create_job(job)
    claim = await _claim(store)
    job_id = job.media_processing_id
    for text in ("not json", "[1, 2]"):
        with pytest.raises(InvalidInputError, match="checkpoint"):
            await store.checkpoint_job(job_id, claim.token, text)
    for delay in (-1, MAX_CLAIM_DELAY_MS + 1, True, 1.5):
        with pytest.raises(InvalidInputError, match="remaining_delay_ms"):
            await store.checkpoint_job(job_id, claim.token, _progress(1), delay)  # type: ignore[arg-type]
    _, stored = await _stored(store, job_id)
    assert stored.checkpoint is None and stored.status is JobStatus.PROCESSING
