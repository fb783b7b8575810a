"""Moves, completions and creates interleaved at a chosen point, on every leg.

MongoStore looks for a job in several collections and moves it in several steps; its
test hook (`set_step_hook`) runs a competing operation exactly between two of those
steps, so each interleaving below happens every run, not by luck. On SQLite every call
is one transaction and cannot be split: the competing operation runs before the call
(the order the interleaving must be equivalent to), and the same end state is expected.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.common.store import JobCollection, JobStatus, Store
from services.common.store.mongo import MongoStore
from tests.helpers.store_factories import new_job

ACTIVE, HOLDING, FAILED = JobCollection.ACTIVE, JobCollection.HOLDING, JobCollection.FAILED
Action = Callable[[], Awaitable[object]]


@contextlib.asynccontextmanager
async def interleaved(store: Store, step: str, action: Action) -> AsyncIterator[list[str]]:
    """Runs `action` once: at the first `step` of MongoStore, else at once (SQLite).

    Yields the steps at which it ran; if the step never came (the operation took
    another path), the action runs on leaving, so every leg ends in the same state.
    """
    fired: list[str] = []

    async def hook(name: str) -> None:
        if name == step and not fired:
            fired.append(name)  # first: the action's own steps must not run it again
            await action()

    if isinstance(store, MongoStore):
        store.set_step_hook(hook)
    else:
        fired.append("before")
        await action()
    try:
        yield fired
    finally:
        if isinstance(store, MongoStore):
            store.set_step_hook(None)
        if not fired:
            await action()


def _interleaved_for_real(store: Store, fired: list[str]) -> bool:
    return isinstance(store, MongoStore) and fired != []


async def _everywhere(store: Store, bot_id: str) -> dict[JobCollection, list[str]]:
    return {
        c: [j.media_processing_id for j in await store.list_jobs(bot_id, c)] for c in JobCollection
    }


async def test_the_leg_uses_transactions_exactly_on_a_replica_set(
    store: Store, request: pytest.FixtureRequest
) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("MongoDB only")
    leg = request.node.callspec.params["store_config"]
    if leg == "mongodb-secantus-replset":
        assert store.uses_transactions
    elif leg == "mongodb-secantus-standalone":
        assert not store.uses_transactions


@pytest.mark.parametrize("operation", ["complete", "renew", "fail", "get"])
async def test_a_start_bot_move_between_two_lookups_loses_no_update(
    store: Store, operation: str
) -> None:
    """Issue 14, race 1: the job moves holding → active after the lookup in active
    missed and before the one in holding; the call must still find it."""
    job = new_job()
    job_id = job.media_processing_id
    assert await store.create_job(job)
    claim = await store.claim_job(["image"], "w1", 60)
    assert claim is not None and claim.job.media_processing_id == job_id
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 1

    async def start_bot() -> object:
        return await store.move_bot_jobs("bot-1", HOLDING, ACTIVE)

    step = {"complete": "update_live", "renew": "update_live", "fail": "fail_job"}
    async with interleaved(store, step.get(operation, "get_job"), start_bot) as fired:
        if operation == "complete":
            assert await store.complete_job(job_id, claim.token, "the text") is ACTIVE
        elif operation == "renew":
            assert await store.renew_lease(job_id, claim.token, 120) is True
        elif operation == "fail":
            assert await store.fail_job(job_id, "corrupt", token=claim.token) is True
        else:
            found = await store.get_job(job_id)
            # A snapshot read may see the job before the move; it must see it somewhere.
            assert found is not None and found[0] in (ACTIVE, HOLDING)
            assert found[1].media_processing_id == job_id
    if isinstance(store, MongoStore):
        assert fired, "the interleaving did not happen"

    where = await _everywhere(store, "bot-1")
    if operation == "fail":
        assert where == {ACTIVE: [], HOLDING: [], FAILED: [job_id]}
        return
    assert where == {ACTIVE: [job_id], HOLDING: [], FAILED: []}
    stored = await store.get_job(job_id)
    assert stored is not None and stored[0] is ACTIVE
    if operation == "complete":
        assert stored[1].status is JobStatus.COMPLETED and stored[1].result == "the text"
    elif operation == "renew":
        assert stored[1].status is JobStatus.PROCESSING
        renewed, claimed = stored[1].lease_expires_at, claim.job.lease_expires_at
        assert renewed is not None and claimed is not None and renewed > claimed


async def test_two_opposite_moves_at_once_keep_the_job_exactly_once(store: Store) -> None:
    """Issue 14, race 2: a StartBot (holding → active) runs while a StopBot (active →
    holding) has copied the job and not yet deleted the source."""
    job = new_job()
    assert await store.create_job(job)

    async def start_bot() -> object:
        return await store.move_bot_jobs("bot-1", HOLDING, ACTIVE)

    async with interleaved(store, "move", start_bot) as fired:
        assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 1
    if isinstance(store, MongoStore):
        assert fired, "the interleaving did not happen"
    # Whatever the StartBot saw, the StopBot finished last: the job is held, once.
    assert await _everywhere(store, "bot-1") == {
        ACTIVE: [],
        HOLDING: [job.media_processing_id],
        FAILED: [],
    }
    # And it still moves as one job.
    assert await store.move_bot_jobs("bot-1", HOLDING, ACTIVE) == 1
    assert await store.existing_job_ids([job.media_processing_id]) == {job.media_processing_id}


async def test_a_stop_bot_move_during_a_repeated_create_duplicates_nothing(store: Store) -> None:
    """Issue 14, race 3: create_job for an id already in active (a retried request)
    checks holding and failed, then a StopBot moves the job to holding, then it inserts."""
    job = new_job()
    assert await store.create_job(job)
    first = await store.get_job(job.media_processing_id)
    assert first is not None

    async def stop_bot() -> object:
        return await store.move_bot_jobs("bot-1", ACTIVE, HOLDING)

    async with interleaved(store, "create", stop_bot):
        assert await store.create_job(job) is False
    assert await _everywhere(store, "bot-1") == {
        ACTIVE: [],
        HOLDING: [job.media_processing_id],
        FAILED: [],
    }
    held = await store.get_job(job.media_processing_id)
    assert held is not None and held[1].created_at == first[1].created_at


async def test_a_start_bot_move_during_a_repeated_create_duplicates_nothing(store: Store) -> None:
    """The other direction: the id is held, and a StartBot brings it back to active
    while create_job runs; the create must report the existing job, not a new one."""
    job = new_job()
    assert await store.create_job(job)
    first = await store.get_job(job.media_processing_id)
    assert first is not None
    assert await store.move_bot_jobs("bot-1", ACTIVE, HOLDING) == 1

    async def start_bot() -> object:
        return await store.move_bot_jobs("bot-1", HOLDING, ACTIVE)

    async with interleaved(store, "create", start_bot):
        assert await store.create_job(job) is False
    assert await _everywhere(store, "bot-1") == {
        ACTIVE: [job.media_processing_id],
        HOLDING: [],
        FAILED: [],
    }
    back = await store.get_job(job.media_processing_id)
    assert back is not None and back[1].created_at == first[1].created_at
