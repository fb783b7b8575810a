"""A result's typed values (`media_result`, MediaResult JSON) on every leg: kept with the
result, through moves, refused when not a JSON object, cleared by a requeue."""

from __future__ import annotations

import json

import pytest

from services.common.errors import InvalidInputError
from services.common.store import JobCollection, MediaJob, Store
from tests.helpers.store_factories import new_job

ACTIVE, HOLDING = JobCollection.ACTIVE, JobCollection.HOLDING
TRANSCRIPT = json.dumps({"language": "pt", "languageProbability": 0.81}, sort_keys=True)


async def _stored(store: Store, media_processing_id: str) -> tuple[JobCollection, MediaJob]:
    found = await store.get_job(media_processing_id)
    assert found is not None
    return found


async def test_the_values_are_kept_with_the_result_and_through_moves(store: Store) -> None:
    job, plain = new_job(pool="audio"), new_job(pool="audio")
    for each in (job, plain):
        assert await store.create_job(each)
    _, created = await _stored(store, job.media_processing_id)
    assert created.media_result is None
    for each, values in ((job, TRANSCRIPT), (plain, None)):
        claim = await store.claim_job(["audio"], "w", 30)
        assert claim is not None and claim.job.media_processing_id == each.media_processing_id
        where = await store.complete_job(
            each.media_processing_id, claim.token, "[Voice note, 0:04, Portuguese] oi", None, values
        )
        assert where is ACTIVE
    _, completed = await _stored(store, job.media_processing_id)
    assert completed.media_result == TRANSCRIPT
    assert (await _stored(store, plain.media_processing_id))[1].media_result is None

    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 2
    where, held = await _stored(store, job.media_processing_id)
    assert where is HOLDING and held.media_result == TRANSCRIPT
    [listed, _] = await store.list_jobs("bot-1", HOLDING)
    assert listed.media_result == TRANSCRIPT


async def test_values_that_are_not_a_json_object_are_refused_and_nothing_changes(
    store: Store,
) -> None:
    job = new_job()
    assert await store.create_job(job)
    claim = await store.claim_job(["image"], "w", 30)
    assert claim is not None
    for bad in ("not json", "[1, 2]", '"pt"'):
        with pytest.raises(InvalidInputError, match="media_result"):
            await store.complete_job(job.media_processing_id, claim.token, "text", None, bad)
    _, unchanged = await _stored(store, job.media_processing_id)
    assert unchanged.result is None and unchanged.media_result is None


async def test_a_requeue_clears_the_values_of_the_earlier_result(store: Store) -> None:
    job = new_job()
    assert await store.create_job(job)
    claim = await store.claim_job(["image"], "w", 30)
    assert claim is not None
    assert await store.complete_job(job.media_processing_id, claim.token, "t", None, TRANSCRIPT)
    assert await store.fail_job(job.media_processing_id, "delivery rejected")
    _, failed = await _stored(store, job.media_processing_id)
    assert failed.media_result == TRANSCRIPT  # kept for the operator
    assert await store.requeue_failed_job(job.media_processing_id, ACTIVE)
    _, requeued = await _stored(store, job.media_processing_id)
    assert requeued.result is None and requeued.media_result is None
