"""Claim order inside a pool on every leg: the smallest `claim_at` (arrival + expected
cost) first, so a long file does not hold short ones back and nothing starves."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import (
    MAX_CLAIM_DELAY_MS,
    JobCollection,
    MediaJob,
    Store,
    StoreConfig,
    claim_delay_for_size,
    open_store,
)
from services.common.store.mongo import MongoStore
from tests.helpers.store_factories import new_job, now_ms

ACTIVE, HOLDING = JobCollection.ACTIVE, JobCollection.HOLDING


async def _until_clock_passes(instant: datetime) -> None:
    """Waits for the wall clock itself (the condition under test), not for another task."""
    await asyncio.sleep((instant - datetime.now(UTC)).total_seconds() + 0.002)
    assert datetime.now(UTC) > instant


async def _claimed_ids(store: Store, pool: str) -> list[str]:
    ids: list[str] = []
    while (claim := await store.claim_job([pool], "w", 30)) is not None:
        ids.append(claim.job.media_processing_id)
    return ids


async def test_a_short_job_arriving_during_a_long_ones_cost_is_claimed_first(
    store: Store,
) -> None:
    before = now_ms()
    long = new_job(pool="audio", claim_delay_ms=60_000)
    assert await store.create_job(long)
    shorts = [new_job(pool="audio", claim_delay_ms=500) for _ in range(3)]
    for job in shorts:
        assert await store.create_job(job)
    found = await store.get_job(long.media_processing_id)
    assert found is not None
    _, stored = found
    assert stored.claim_delay_ms == 60_000
    assert stored.claim_at == stored.created_at + timedelta(milliseconds=60_000)
    assert before <= stored.created_at <= now_ms()

    order = await _claimed_ids(store, "audio")
    assert order == [j.media_processing_id for j in shorts] + [long.media_processing_id]


async def test_a_job_arriving_after_a_long_ones_claim_at_ranks_behind_it(store: Store) -> None:
    long = new_job(pool="audio", claim_delay_ms=40)
    assert await store.create_job(long)
    _, stored = await _found(store, long.media_processing_id)
    await _until_clock_passes(stored.claim_at)
    late_short = new_job(pool="audio")  # no delay at all, yet it arrived too late
    assert await store.create_job(late_short)

    order = await _claimed_ids(store, "audio")
    assert order == [long.media_processing_id, late_short.media_processing_id]


async def test_claim_order_is_kept_through_retries_and_moves(store: Store) -> None:
    first = new_job(pool="audio", claim_delay_ms=1_000)
    second = new_job(pool="audio", claim_delay_ms=5_000)
    for job in (first, second):
        assert await store.create_job(job)
    claim = await store.claim_job(["audio"], "w", 30)
    assert claim is not None and claim.job.media_processing_id == first.media_processing_id
    retry_at = datetime.now(UTC) + timedelta(milliseconds=60)
    assert await store.release_job(first.media_processing_id, claim.token, "timeout", retry_at)
    # Backing off: the retry waits for available_at even though it ranks first.
    other = await store.claim_job(["audio"], "w", 30)
    assert other is not None and other.job.media_processing_id == second.media_processing_id
    assert await store.release_job(second.media_processing_id, other.token, "x", datetime.now(UTC))
    await _until_clock_passes(retry_at)

    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 2
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 2
    for job in (first, second):
        _, moved = await _found(store, job.media_processing_id)
        assert moved.claim_at == moved.created_at + timedelta(milliseconds=job.claim_delay_ms)
    assert await _claimed_ids(store, "audio") == [
        first.media_processing_id,
        second.media_processing_id,
    ]


async def test_pools_keep_their_own_order_when_one_worker_claims_several(store: Store) -> None:
    long_audio = new_job(pool="audio", claim_delay_ms=30_000)
    image = new_job(pool="image", claim_delay_ms=100)
    for job in (long_audio, image):
        assert await store.create_job(job)
    claim = await store.claim_job(["audio", "image"], "w", 30)
    assert claim is not None and claim.job.media_processing_id == image.media_processing_id


def test_a_bad_claim_delay_is_refused() -> None:
    for bad in (-1, MAX_CLAIM_DELAY_MS + 1, True, 1.5):
        with pytest.raises(InvalidInputError, match="claim_delay_ms"):
            new_job(claim_delay_ms=bad)


async def _found(store: Store, media_processing_id: str) -> tuple[JobCollection, MediaJob]:
    found = await store.get_job(media_processing_id)
    assert found is not None
    return found


@pytest.mark.parametrize(("long_delay_ms", "short_delay_ms"), [(150, 0), (250, 40)])
async def test_no_job_starves_under_a_steady_stream_of_short_ones(
    store: Store, long_delay_ms: int, short_delay_ms: int
) -> None:
    """A short job arrives for every one claimed, so the pool is never empty: pure
    shortest-first would never reach the long one. It is claimed once the clock passes
    its claim_at, and only jobs that arrived before that instant went first."""
    long = new_job(pool="audio", claim_delay_ms=long_delay_ms)
    assert await store.create_job(long)
    _, stored = await _found(store, long.media_processing_id)
    first_short = new_job(pool="audio", claim_delay_ms=short_delay_ms)
    assert await store.create_job(first_short)
    _, first_stored = await _found(store, first_short.media_processing_id)
    went_first: list[datetime] = []
    for _ in range(5_000):
        claim = await store.claim_job(["audio"], "w", 30)
        assert claim is not None
        if claim.job.media_processing_id == long.media_processing_id:
            break
        went_first.append(claim.job.created_at)
        assert await store.create_job(new_job(pool="audio", claim_delay_ms=short_delay_ms))
    else:
        pytest.fail("the long job starved behind a steady stream of short ones")
    if first_stored.claim_at < stored.claim_at:  # not so when the store was very slow
        assert went_first, "the short jobs that arrived during its cost went first"
    assert all(created <= stored.claim_at for created in went_first)


async def test_an_older_databases_arrival_order_index_is_dropped_on_open(
    store_config: StoreConfig,
) -> None:
    """Every job write would maintain the index claims no longer use."""
    active = ACTIVE.collection_name
    first = await open_store(store_config)
    try:
        if isinstance(first, MongoStore):
            jobs = first._jobs[ACTIVE]
            await jobs.create_index([("status", 1), ("pool", 1), ("created_at", 1)], name="claim")
            assert "claim" in await jobs.index_information()
    finally:
        await first.close()
    if store_config.backend == "sqlite":
        with sqlite3.connect(store_config.sqlite_path) as conn:
            conn.execute(f"CREATE INDEX {active}_claim ON {active} (status, pool, created_at)")
        conn.close()

    second = await open_store(store_config)
    try:
        if isinstance(second, MongoStore):
            names = set(await second._jobs[ACTIVE].index_information())
            assert "claim" not in names and "claim_order" in names
        else:
            with contextlib.closing(sqlite3.connect(store_config.sqlite_path)) as conn:
                names = {
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                        (active,),
                    )
                }
            assert f"{active}_claim" not in names and f"{active}_claim_order" in names
    finally:
        await second.close()


async def test_a_job_rerouted_to_another_pool_takes_that_pools_cost(store: Store) -> None:
    """Its old pool's estimate would rank it wrongly among the new pool's jobs."""
    route = "staged|MEDIA_KIND_AUDIO|audio/ogg"
    mib = 1 << 20
    moved = new_job(pool="unsupported", route=route, file_size=2 * mib, claim_delay_ms=240_000)
    held = new_job(
        pool="unsupported", route=route, file_size=mib, claim_delay_ms=120_000, bot_id="bot-2"
    )
    already = new_job(pool="audio", route="other", file_size=0, claim_delay_ms=5_000)
    for job in (moved, held, already):
        assert await store.create_job(job)
    assert await store.move_bot_jobs("bot-2", ACTIVE, HOLDING) == 1

    assert await store.set_pool_for_route(route, "audio", 1.0) == 2
    for job, size in ((moved, 2 * mib), (held, mib)):
        _, stored = await _found(store, job.media_processing_id)
        assert stored.pool == "audio"
        assert stored.claim_delay_ms == claim_delay_for_size(size, 1.0) == size // mib * 1000
        assert stored.claim_at == stored.created_at + timedelta(milliseconds=stored.claim_delay_ms)
    # Two seconds in its new pool, not four minutes: it goes before the five-second job.
    assert await _claimed_ids(store, "audio") == [
        moved.media_processing_id,
        already.media_processing_id,
    ]


async def test_rerouting_without_a_rate_keeps_the_cost_and_a_bad_rate_is_refused(
    store: Store,
) -> None:
    job = new_job(pool="unsupported", route="r", file_size=1 << 20, claim_delay_ms=7_000)
    assert await store.create_job(job)
    for bad in (-1.0, 3601.0, True, float("nan")):
        with pytest.raises(InvalidInputError, match="seconds_per_mib"):
            await store.set_pool_for_route("r", "audio", bad)
    _, unchanged = await _found(store, job.media_processing_id)
    assert unchanged.pool == "unsupported"
    assert await store.set_pool_for_route("r", "audio") == 1
    _, stored = await _found(store, job.media_processing_id)
    assert stored.pool == "audio" and stored.claim_delay_ms == 7_000
    assert stored.claim_at == unchanged.claim_at
