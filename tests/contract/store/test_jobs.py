"""Media jobs on every leg: claim with lease and fencing token, result, moves, cleanup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import JobCollection, JobStatus, Store
from tests.helpers.clock import naive_now
from tests.helpers.store_factories import new_job, now_ms

ACTIVE, HOLDING, FAILED = JobCollection.ACTIVE, JobCollection.HOLDING, JobCollection.FAILED


async def test_create_and_get_round_trip_every_field(store: Store) -> None:
    job = new_job(
        original_filename="report.pdf",
        group_id="120363000000000000@g.us",
        group_name="Team",
        has_staged_file=False,
        caption="",
        route="corrupt|MEDIA_KIND_IMAGE|image/jpeg",
        condition_detail="download failed: HTTP 410 after re-upload",
    )
    before = now_ms()
    assert await store.create_job(job) is True
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    where, stored = found
    assert where is ACTIVE
    for name in job.__dataclass_fields__:
        assert getattr(stored, name) == getattr(job, name), name
    assert stored.status is JobStatus.PENDING
    assert stored.attempts == 0 and stored.fence == 0
    assert stored.claimed_by is None and stored.lease_expires_at is None
    assert stored.result is None and stored.error is None and stored.failed_at is None
    assert before <= stored.created_at == stored.available_at <= now_ms()
    assert await store.get_job(new_job().media_processing_id) is None


async def test_create_is_refused_when_the_id_exists_in_any_collection(store: Store) -> None:
    job = new_job()
    assert await store.create_job(job) is True
    assert await store.create_job(new_job(media_processing_id=job.media_processing_id)) is False

    held = new_job(bot_id="bot-held")
    assert await store.create_job(held)
    assert await store.move_bot_jobs("bot-held", ACTIVE, HOLDING) == 1
    assert await store.create_job(held) is False

    failed = new_job(bot_id="bot-failed")
    assert await store.create_job(failed)
    assert await store.fail_job(failed.media_processing_id, "corrupt")
    assert await store.create_job(failed) is False

    assert [j.media_processing_id for j in await store.list_jobs("bot-1", ACTIVE)] == [
        job.media_processing_id
    ]
    assert await store.existing_job_ids(
        [job.media_processing_id, held.media_processing_id, failed.media_processing_id]
    ) == {job.media_processing_id, held.media_processing_id, failed.media_processing_id}


def test_bad_jobs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="UUID4"):
        new_job(media_processing_id="../../etc/passwd")
    with pytest.raises(InvalidInputError, match="timezone"):
        new_job(originating_time=naive_now())
    with pytest.raises(InvalidInputError, match="pool"):
        new_job(pool="")


async def test_claim_takes_the_oldest_of_the_given_pools(store: Store) -> None:
    first_audio = new_job(pool="audio")
    image = new_job(pool="image")
    second_audio = new_job(pool="audio")
    for job in (first_audio, image, second_audio):
        assert await store.create_job(job)
        await asyncio.sleep(0.003)  # distinct created_at milliseconds

    assert await store.claim_job(["video"], "w1", 30) is None
    claim = await store.claim_job(["image", "audio"], "w1", 30)
    assert claim is not None
    assert claim.job.media_processing_id == first_audio.media_processing_id
    assert claim.token == 1 == claim.job.attempts == claim.job.fence
    assert claim.job.status is JobStatus.PROCESSING
    assert claim.job.claimed_by == "w1"
    assert claim.job.lease_expires_at is not None
    assert claim.job.lease_expires_at > datetime.now(UTC) + timedelta(seconds=25)

    nxt = await store.claim_job(["audio", "image"], "w2", 30)
    assert nxt is not None and nxt.job.media_processing_id == image.media_processing_id
    last = await store.claim_job(["audio"], "w2", 30)
    assert last is not None and last.job.media_processing_id == second_audio.media_processing_id
    assert await store.claim_job(["audio", "image"], "w3", 30) is None


async def test_claim_input_is_validated(store: Store) -> None:
    assert await store.create_job(new_job())
    with pytest.raises(InvalidInputError, match="pool"):
        await store.claim_job([], "w", 30)
    with pytest.raises(InvalidInputError, match="lease_seconds"):
        await store.claim_job(["image"], "w", 0)
    [pending] = await store.list_jobs("bot-1", ACTIVE)
    assert pending.status is JobStatus.PENDING and pending.attempts == 0


async def test_expired_lease_is_reclaimed_and_the_stale_worker_is_fenced_off(store: Store) -> None:
    job = new_job()
    await store.create_job(job)
    job_id = job.media_processing_id
    stale = await store.claim_job(["image"], "dead-worker", 0.15)
    assert stale is not None and stale.token == 1
    assert await store.claim_job(["image"], "w2", 30) is None  # lease still running

    await asyncio.sleep(0.3)
    fresh = await store.claim_job(["image"], "w2", 30)
    assert fresh is not None
    assert fresh.job.media_processing_id == job_id
    assert fresh.token == 2 and fresh.job.claimed_by == "w2"

    # The worker whose lease expired can do nothing with its old token.
    assert await store.complete_job(job_id, stale.token, "late result") is None
    assert await store.renew_lease(job_id, stale.token, 30) is False
    retry_at = datetime.now(UTC)
    assert await store.release_job(job_id, stale.token, "crash", retry_at) is False
    assert await store.fail_job(job_id, "stale failure", token=stale.token) is False
    found = await store.get_job(job_id)
    assert found is not None and found[0] is ACTIVE
    assert found[1].status is JobStatus.PROCESSING and found[1].result is None

    assert await store.complete_job(job_id, fresh.token, "fresh result") is ACTIVE
    found = await store.get_job(job_id)
    assert found is not None
    assert found[1].status is JobStatus.COMPLETED and found[1].result == "fresh result"
    assert found[1].attempts == 2 == found[1].fence
    # A completed job is neither claimable nor completable again.
    assert await store.claim_job(["image"], "w3", 30) is None
    assert await store.complete_job(job_id, fresh.token, "twice") is None


async def test_stale_job_resolved_in_place_fences_off_its_worker(store: Store) -> None:
    pending, running, held, done = new_job(), new_job(), new_job(bot_id="bot-2"), new_job()
    for job in (done, running, pending, held):
        assert await store.create_job(job)
    finished = await store.claim_job(["image"], "w1", 30)
    assert finished is not None and finished.job.media_processing_id == done.media_processing_id
    assert await store.complete_job(done.media_processing_id, finished.token, "a cat")
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None and claim.job.media_processing_id == running.media_processing_id
    assert await store.move_bot_jobs("bot-2", ACTIVE, HOLDING) == 1
    marker, error = "[Image not processed: timed out]", "timed_out: not processed within 10800 s"

    for job, collection in ((pending, ACTIVE), (running, ACTIVE), (held, HOLDING)):
        before = await store.get_job(job.media_processing_id)
        assert before is not None
        assert await store.resolve_stale_job(job.media_processing_id, marker, error) is True
        found = await store.get_job(job.media_processing_id)
        assert found is not None and found[0] is collection  # left where it was
        resolved = found[1]
        assert resolved.status is JobStatus.COMPLETED
        assert (resolved.result, resolved.error) == (marker, error)
        assert resolved.fence == before[1].fence + 1 and resolved.attempts == before[1].attempts
        assert resolved.claimed_by is None and resolved.lease_expires_at is None
        assert resolved.updated_at >= before[1].updated_at
        # Done once: a second call, or one for a job completed meanwhile, changes nothing.
        assert await store.resolve_stale_job(job.media_processing_id, "other", "other") is False
        again = await store.get_job(job.media_processing_id)
        assert again is not None and again[1] == resolved

    # The worker still running the job can neither renew, complete, release nor fail it.
    job_id = running.media_processing_id
    assert await store.renew_lease(job_id, claim.token, 30) is False
    assert await store.complete_job(job_id, claim.token, "late") is None
    assert await store.release_job(job_id, claim.token, "x", datetime.now(UTC)) is False
    assert await store.fail_job(job_id, "x", token=claim.token) is False
    assert await store.claim_job(["image"], "w2", 30) is None  # not claimable either

    # A completed job keeps its result; unknown and failed jobs are not touched.
    assert await store.resolve_stale_job(done.media_processing_id, marker, error) is False
    found = await store.get_job(done.media_processing_id)
    assert found is not None and (found[1].result, found[1].error) == ("a cat", None)
    assert await store.resolve_stale_job(new_job().media_processing_id, marker, error) is False
    dead = new_job()
    assert await store.create_job(dead) and await store.fail_job(dead.media_processing_id, "x")
    assert await store.resolve_stale_job(dead.media_processing_id, marker, error) is False
    found = await store.get_job(dead.media_processing_id)
    assert found is not None and found[0] is FAILED and found[1].status is JobStatus.PENDING

    # It travels with its result, error and fence through a move and into failed.
    assert await store.move_bot_jobs("bot-2", HOLDING, ACTIVE) == 1
    assert await store.fail_job(held.media_processing_id, error)
    found = await store.get_job(held.media_processing_id)
    assert found is not None and found[0] is FAILED
    assert (found[1].result, found[1].error, found[1].fence) == (marker, error, 1)


async def test_renewed_lease_keeps_the_job(store: Store) -> None:
    job = new_job()
    await store.create_job(job)
    claim = await store.claim_job(["image"], "w1", 0.15)
    assert claim is not None
    assert await store.renew_lease(job.media_processing_id, claim.token, 30) is True
    await asyncio.sleep(0.3)
    assert await store.claim_job(["image"], "w2", 30) is None
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[1].lease_expires_at is not None
    assert found[1].lease_expires_at > datetime.now(UTC) + timedelta(seconds=25)
    assert await store.renew_lease(new_job().media_processing_id, 1, 30) is False


async def test_release_backs_off_then_the_job_is_claimable_again(store: Store) -> None:
    job = new_job()
    await store.create_job(job)
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None
    retry_at = datetime.now(UTC) + timedelta(seconds=0.25)
    assert await store.release_job(job.media_processing_id, claim.token, "engine timeout", retry_at)
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    _, released = found
    assert released.status is JobStatus.PENDING and released.error == "engine timeout"
    assert released.claimed_by is None and released.lease_expires_at is None
    assert released.attempts == 1
    assert await store.claim_job(["image"], "w2", 30) is None  # backing off

    await asyncio.sleep(0.35)
    again = await store.claim_job(["image"], "w2", 30)
    assert again is not None and again.token == 2
    with pytest.raises(InvalidInputError, match="retry_at"):
        await store.release_job(job.media_processing_id, 2, "x", naive_now())


async def test_processing_job_moved_to_holding_completes_there(store: Store) -> None:
    job = new_job()
    other_bot = new_job(bot_id="bot-2")
    await store.create_job(job)
    await store.create_job(other_bot)
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None and claim.job.media_processing_id == job.media_processing_id

    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 1
    assert await store.list_jobs("bot-1", ACTIVE) == []
    [held] = await store.list_jobs("bot-1", HOLDING)
    assert held.status is JobStatus.PROCESSING and held.fence == claim.token
    assert await store.renew_lease(job.media_processing_id, claim.token, 30) is True
    # Holding is never claimed from.
    second = await store.claim_job(["image"], "w2", 30)
    assert second is not None and second.job.bot_id == "bot-2"

    assert await store.complete_job(job.media_processing_id, claim.token, "text") is HOLDING
    [done] = await store.list_jobs("bot-1", HOLDING)
    assert done.status is JobStatus.COMPLETED and done.result == "text"

    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 1
    [back] = await store.list_jobs("bot-1", ACTIVE)
    assert back == done
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 0
    with pytest.raises(InvalidInputError, match="active and holding"):
        await store.move_bot_jobs("bot-1", ACTIVE, FAILED)


async def test_moves_lose_and_duplicate_nothing(store: Store) -> None:
    jobs = [new_job(bot_id="bot-1") for _ in range(30)] + [
        new_job(bot_id="bot-2") for _ in range(5)
    ]
    for job in jobs:
        assert await store.create_job(job)
    ids = {j.media_processing_id for j in jobs}
    bot1 = {j.media_processing_id for j in jobs if j.bot_id == "bot-1"}
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 30
    assert {j.media_processing_id for j in await store.list_jobs("bot-1", HOLDING)} == bot1
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 30
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 30
    active = await store.list_jobs("bot-1", ACTIVE) + await store.list_jobs("bot-2", ACTIVE)
    holding = await store.list_jobs("bot-1", HOLDING) + await store.list_jobs("bot-2", HOLDING)
    assert len(active) == 5 and len(holding) == 30
    assert {j.media_processing_id for j in active + holding} == ids
    assert await store.existing_job_ids(ids) == ids
    # Oldest first, as created.
    assert [j.media_processing_id for j in holding] == [
        j.media_processing_id for j in jobs if j.bot_id == "bot-1"
    ]


async def test_delete_from_active_or_holding(store: Store) -> None:
    active, held = new_job(), new_job(bot_id="bot-2")
    await store.create_job(active)
    await store.create_job(held)
    await store.move_bot_jobs("bot-2", ACTIVE, HOLDING)
    assert await store.delete_job(active.media_processing_id) is True
    assert await store.delete_job(held.media_processing_id) is True
    assert await store.delete_job(held.media_processing_id) is False
    assert (
        await store.existing_job_ids([active.media_processing_id, held.media_processing_id])
        == set()
    )


async def test_delete_failed_job_deletes_only_from_failed(store: Store) -> None:
    failed, live = new_job(), new_job()
    for job in (failed, live):
        await store.create_job(job)
    assert await store.fail_job(failed.media_processing_id, "corrupt file")
    # An operator's delete of a job that is not (or no longer) failed changes nothing.
    assert await store.delete_failed_job(live.media_processing_id) is False
    assert await store.delete_failed_job(failed.media_processing_id) is True
    assert await store.delete_failed_job(failed.media_processing_id) is False
    assert await store.existing_job_ids(
        [failed.media_processing_id, live.media_processing_id]
    ) == {live.media_processing_id}


async def test_fail_list_and_requeue(store: Store) -> None:
    first, second, third = new_job(), new_job(), new_job(bot_id="bot-2")
    for job in (first, second, third):
        await store.create_job(job)
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None and claim.job.media_processing_id == first.media_processing_id

    assert await store.fail_job(first.media_processing_id, "wrong", token=claim.token + 1) is False
    assert await store.fail_job(first.media_processing_id, "corrupt", token=claim.token) is True
    await asyncio.sleep(0.003)
    assert await store.fail_job(second.media_processing_id, "unsupported") is True
    await asyncio.sleep(0.003)
    await store.move_bot_jobs("bot-2", ACTIVE, HOLDING)
    assert await store.fail_job(third.media_processing_id, "timed out") is True
    assert await store.fail_job(third.media_processing_id, "again") is False
    # The failed worker's token is dead too.
    assert await store.complete_job(first.media_processing_id, claim.token, "late") is None

    failed = await store.list_failed_jobs()
    assert [j.media_processing_id for j in failed] == [
        third.media_processing_id,
        second.media_processing_id,
        first.media_processing_id,
    ]
    assert failed[2].status is JobStatus.PROCESSING  # status kept for the operator
    assert failed[2].error == "corrupt" and failed[2].failed_at is not None
    assert [j.error for j in await store.list_failed_jobs("bot-1")] == ["unsupported", "corrupt"]
    assert len(await store.list_failed_jobs(limit=1)) == 1
    # One paging rule on both adapters (SQLite once read LIMIT -1 as no limit).
    assert await store.list_failed_jobs(limit=0) == []
    with pytest.raises(InvalidInputError, match="limit"):
        await store.list_failed_jobs(limit=-1)
    found = await store.get_job(first.media_processing_id)
    assert found is not None and found[0] is FAILED

    assert await store.requeue_failed_job(first.media_processing_id, ACTIVE) is True
    assert await store.requeue_failed_job(first.media_processing_id, ACTIVE) is False
    assert await store.requeue_failed_job(third.media_processing_id, HOLDING) is True
    with pytest.raises(InvalidInputError, match="failed"):
        await store.requeue_failed_job(second.media_processing_id, FAILED)
    found = await store.get_job(first.media_processing_id)
    assert found is not None and found[0] is ACTIVE
    requeued = found[1]
    assert requeued.status is JobStatus.PENDING and requeued.attempts == 0
    assert requeued.fence == claim.token  # the fence is never reset
    assert requeued.error is None and requeued.failed_at is None and requeued.claimed_by is None
    [held] = await store.list_jobs("bot-2", HOLDING)
    assert held.media_processing_id == third.media_processing_id
    assert [j.media_processing_id for j in await store.list_failed_jobs()] == [
        second.media_processing_id
    ]
    again = await store.claim_job(["image"], "w2", 30)
    assert again is not None and again.job.media_processing_id == first.media_processing_id
    assert (again.job.attempts, again.token) == (1, claim.token + 1)


async def test_a_token_of_an_earlier_cycle_stays_refused_after_requeue(store: Store) -> None:
    job = new_job()
    await store.create_job(job)
    job_id = job.media_processing_id
    # A slow worker still holds its claim when the job is dead-lettered under it (the
    # cleanup fails stale jobs without a token) and an operator requeues it.
    slow = await store.claim_job(["image"], "slow-worker", 30)
    assert slow is not None and slow.token == 1
    assert await store.fail_job(job_id, "stale: cleanup") is True
    assert await store.requeue_failed_job(job_id, ACTIVE) is True
    second = await store.claim_job(["image"], "w2", 30)
    assert second is not None and second.job.media_processing_id == job_id
    # attempts counts this cycle's claims again; the token does not repeat.
    assert second.job.attempts == 1
    assert second.token == second.job.fence == 2

    assert await store.complete_job(job_id, slow.token, "late result") is None
    assert await store.renew_lease(job_id, slow.token, 30) is False
    assert await store.release_job(job_id, slow.token, "crash", datetime.now(UTC)) is False
    assert await store.fail_job(job_id, "stale failure", token=slow.token) is False
    found = await store.get_job(job_id)
    assert found is not None and found[0] is ACTIVE
    assert found[1].status is JobStatus.PROCESSING and found[1].claimed_by == "w2"
    assert found[1].result is None and found[1].error is None

    # The same holds for a failure with the token, a requeue to holding and a move back.
    assert await store.fail_job(job_id, "corrupt", token=second.token) is True
    assert await store.requeue_failed_job(job_id, HOLDING) is True
    [held] = await store.list_jobs("bot-1", HOLDING)
    assert (held.attempts, held.fence) == (0, 2)
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 1
    third = await store.claim_job(["image"], "w3", 30)
    assert third is not None and (third.job.attempts, third.token) == (1, 3)
    for stale in (slow.token, second.token):
        assert await store.complete_job(job_id, stale, "stale") is None
        assert await store.renew_lease(job_id, stale, 30) is False
        assert await store.release_job(job_id, stale, "x", datetime.now(UTC)) is False
        assert await store.fail_job(job_id, "x", token=stale) is False
    assert await store.complete_job(job_id, third.token, "third result") is ACTIVE
    found = await store.get_job(job_id)
    assert found is not None and found[1].result == "third result"
    assert (found[1].attempts, found[1].fence) == (1, 3)


async def test_condition_detail_is_kept_through_every_move(store: Store) -> None:
    detail = "download failed: HTTP 410 after re-upload"
    job = new_job(route="corrupt|MEDIA_KIND_IMAGE|image/jpeg", condition_detail=detail)
    plain = new_job()
    await store.create_job(job)
    await store.create_job(plain)
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 2
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 2
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None and claim.job.condition_detail == detail
    assert await store.fail_job(job.media_processing_id, f"corrupt: {detail}", token=claim.token)
    [failed] = await store.list_failed_jobs()
    assert failed.condition_detail == detail and failed.error == f"corrupt: {detail}"
    assert await store.requeue_failed_job(job.media_processing_id, HOLDING)
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[0] is HOLDING and found[1].condition_detail == detail
    found = await store.get_job(plain.media_processing_id)
    assert found is not None and found[1].condition_detail is None


async def test_pool_depths_and_old_jobs(store: Store) -> None:
    assert await store.pool_depths() == {}
    image_jobs = [new_job(pool="image") for _ in range(3)]
    for job in [*image_jobs, new_job(pool="audio"), new_job(pool="audio", bot_id="bot-2")]:
        await store.create_job(job)
        await asyncio.sleep(0.002)
    await store.move_bot_jobs("bot-2", ACTIVE, HOLDING)  # holding is not pool depth
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None
    depths = await store.pool_depths()
    assert set(depths) == {"image", "audio"}
    assert (depths["image"].pending, depths["image"].processing) == (2, 1)
    [second_image] = [
        j
        for j in await store.list_jobs("bot-1", ACTIVE)
        if j.media_processing_id == image_jobs[1].media_processing_id
    ]
    assert depths["image"].oldest_pending_created_at == second_image.created_at
    assert (depths["audio"].pending, depths["audio"].processing) == (1, 0)

    everything = await store.list_jobs("bot-1", ACTIVE)
    bound = everything[2].created_at
    older = await store.jobs_older_than(ACTIVE, bound)
    assert [j.media_processing_id for j in older] == [
        j.media_processing_id for j in everything if j.created_at < bound
    ]
    assert len(await store.jobs_older_than(ACTIVE, now_ms() + timedelta(seconds=1), limit=2)) == 2
    # Pages: offset skips the oldest ones, in the same order.
    later = now_ms() + timedelta(seconds=1)
    pages = [await store.jobs_older_than(ACTIVE, later, limit=2, offset=o) for o in (0, 2, 4)]
    assert [[j.media_processing_id for j in page] for page in pages] == [
        [j.media_processing_id for j in everything[0:2]],
        [j.media_processing_id for j in everything[2:4]],
        [],
    ]
    with pytest.raises(InvalidInputError, match="offset"):
        await store.jobs_older_than(ACTIVE, later, offset=-1)
    assert len(await store.jobs_older_than(HOLDING, now_ms() + timedelta(seconds=1))) == 1
    assert await store.jobs_older_than(FAILED, now_ms() + timedelta(seconds=1)) == []


async def test_list_completed_jobs_least_recently_changed_first(store: Store) -> None:
    first, second, pending, running = (new_job() for _ in range(4))
    held, dead = new_job(bot_id="bot-2"), new_job(bot_id="bot-3")
    for job in (first, second, pending, running, held, dead):
        assert await store.create_job(job)
    claims: dict[str, int] = {}
    for _ in range(6):
        claim = await store.claim_job(["image"], "w1", 30)
        assert claim is not None
        claims[claim.job.media_processing_id] = claim.token
    # Completed in the opposite order of creation: the order follows the completion.
    for job in (second, first, held, dead):
        await asyncio.sleep(0.003)  # distinct updated_at milliseconds
        job_id = job.media_processing_id
        assert await store.complete_job(job_id, claims[job_id], "r")
    await store.release_job(
        pending.media_processing_id,
        claims[pending.media_processing_id],
        "retry",
        datetime.now(UTC),
    )
    await store.move_bot_jobs("bot-2", ACTIVE, HOLDING)
    assert await store.fail_job(dead.media_processing_id, "delivery rejected")

    later = now_ms() + timedelta(seconds=1)
    listed = await store.list_completed_jobs(ACTIVE, later)
    assert [j.media_processing_id for j in listed] == [
        second.media_processing_id,
        first.media_processing_id,
    ]
    assert all(j.status is JobStatus.COMPLETED and j.result == "r" for j in listed)
    # Strictly before the bound.
    only_second = await store.list_completed_jobs(ACTIVE, listed[1].updated_at)
    assert [j.media_processing_id for j in only_second] == [second.media_processing_id]
    assert await store.list_completed_jobs(ACTIVE, listed[0].updated_at) == []
    assert [j.media_processing_id for j in await store.list_completed_jobs(ACTIVE, later, 1)] == [
        second.media_processing_id
    ]
    assert await store.list_completed_jobs(ACTIVE, later, limit=0) == []
    [in_holding] = await store.list_completed_jobs(HOLDING, later)
    assert in_holding.media_processing_id == held.media_processing_id
    [in_failed] = await store.list_completed_jobs(FAILED, later)
    assert in_failed.media_processing_id == dead.media_processing_id

    with pytest.raises(InvalidInputError, match="updated_before"):
        await store.list_completed_jobs(ACTIVE, naive_now())
    with pytest.raises(InvalidInputError, match="limit"):
        await store.list_completed_jobs(ACTIVE, later, limit=-1)


async def test_pending_routes_and_rerouting(store: Store) -> None:
    route = "staged|MEDIA_KIND_DOCUMENT|application/pdf"
    docs = [new_job(route=route, pool="unsupported") for _ in range(3)]
    held = new_job(route=route, pool="unsupported", bot_id="bot-2")
    image = new_job()
    for job in [*docs, held, image]:
        await store.create_job(job)
    await store.move_bot_jobs("bot-2", ACTIVE, HOLDING)
    claim = await store.claim_job(["unsupported"], "w1", 30)
    assert claim is not None
    assert await store.pending_routes() == {route: "unsupported", image.route: "image"}

    # Only pending jobs move: the one being processed keeps its pool.
    assert await store.set_pool_for_route(route, "document") == 3
    assert await store.set_pool_for_route(route, "document") == 0
    assert await store.pending_routes() == {route: "document", image.route: "image"}
    assert await store.claim_job(["unsupported"], "w1", 30) is None
    rerouted = await store.claim_job(["document"], "w1", 30)
    assert rerouted is not None and rerouted.job.pool == "document"
    [still_held] = await store.list_jobs("bot-2", HOLDING)
    assert still_held.pool == "document"


async def test_wait_for_jobs_times_out_or_wakes_on_a_new_job(store: Store) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.wait_for_jobs(0.2)
    assert loop.time() - started >= 0.18

    async def create_soon() -> None:
        await asyncio.sleep(0.1)
        await store.create_job(new_job())

    creator = asyncio.create_task(create_soon())
    started = loop.time()
    await store.wait_for_jobs(10)
    assert loop.time() - started < 5
    await creator
    assert await store.claim_job(["image"], "w1", 30) is not None


async def test_list_completed_jobs_pages_with_an_offset(store: Store) -> None:
    jobs = [new_job() for _ in range(5)]
    for job in jobs:
        assert await store.create_job(job)
    for _ in jobs:
        claim = await store.claim_job(["image"], "w1", 30)
        assert claim is not None
        await asyncio.sleep(0.003)  # distinct updated_at milliseconds
        assert await store.complete_job(claim.job.media_processing_id, claim.token, "r")
    later = now_ms() + timedelta(seconds=1)
    pages = [
        [j.media_processing_id for j in await store.list_completed_jobs(ACTIVE, later, 2, off)]
        for off in (0, 2, 4, 6)
    ]
    assert pages == [
        [jobs[0].media_processing_id, jobs[1].media_processing_id],
        [jobs[2].media_processing_id, jobs[3].media_processing_id],
        [jobs[4].media_processing_id],
        [],
    ]
    with pytest.raises(InvalidInputError, match="offset"):
        await store.list_completed_jobs(ACTIVE, later, 2, -1)
    with pytest.raises(InvalidInputError, match="limit"):
        await store.jobs_older_than(ACTIVE, later, limit=-1)
