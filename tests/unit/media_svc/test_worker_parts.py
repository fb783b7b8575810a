"""A job done in parts (long audio): the worker saves each part's progress with the job
before the next part, runs the parts back to back while nothing cheaper waits, gives the
slot to a cheaper job between two parts, and the next claim resumes where it stopped."""

from __future__ import annotations

import json
from typing import Any

from services.common.store import JobStatus, Store
from services.media_svc.definitions import ActivePool, build
from services.media_svc.processors.registry import ProcessorRegistry, builtin_types
from services.media_svc.worker import JobWorker
from tests.helpers.processors import PartsProcessor
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import QueuePeer


def parts_pool(**options: Any) -> ActivePool:
    document = {
        "pools": [{"name": "Audio", "processor": "parts", "options": options, "fallback": True}]
    }
    registry = ProcessorRegistry({**builtin_types(), "parts": PartsProcessor})
    pool = build(document, registry).pool("Audio")
    assert pool is not None
    return pool


async def _created(store: Store, staging: StagingDirectory, claim_delay_ms: int) -> str:
    job = new_job(pool="Audio", caption="", claim_delay_ms=claim_delay_ms)
    assert await store.create_job(job)
    staging.path_for(job.media_processing_id).write_bytes(b"OggS voice")
    return job.media_processing_id


async def _run_next(store: Store, worker: JobWorker, pool: ActivePool) -> tuple[str, str]:
    claimed = await store.claim_job(["Audio"], "test-worker", 5.0)
    assert claimed is not None
    return claimed.job.media_processing_id, await worker.run(pool, claimed)


async def test_parts_run_back_to_back_while_nothing_cheaper_waits(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    pool = parts_pool(parts=3)
    job_id = await _created(store, staging, 30_000)
    # A costlier job waiting does not take the slot.
    costly = await _created(store, staging, 60_000)

    assert await _run_next(store, worker, pool) == (job_id, "delivered")
    [call] = queue_peer.servicer.calls
    assert (call.media_processing_id, call.content) == (job_id, "part 0; part 1; part 2")
    found = await store.get_job(costly)
    assert found is not None and found[1].status is JobStatus.PENDING


async def test_a_cheaper_job_takes_the_slot_between_parts_and_the_long_one_resumes(
    store: Store, staging: StagingDirectory, worker: JobWorker, queue_peer: QueuePeer
) -> None:
    pool = parts_pool(parts=3)
    long_id = await _created(store, staging, 30_000)
    claimed = await store.claim_job(["Audio"], "test-worker", 5.0)
    assert claimed is not None and claimed.job.media_processing_id == long_id
    short_id = await _created(store, staging, 500)

    assert await worker.run(pool, claimed) == "yielded"
    found = await store.get_job(long_id)
    assert found is not None
    _, parked = found
    assert parked.status is JobStatus.PENDING and parked.attempts == 0
    assert json.loads(parked.checkpoint or "{}") == {"done": ["part 0"]}
    assert queue_peer.servicer.calls == []

    # The short job first (it is done in parts too, but nothing is cheaper than it).
    assert await _run_next(store, worker, pool) == (short_id, "delivered")
    assert await _run_next(store, worker, pool) == (long_id, "delivered")
    contents = [(c.media_processing_id, c.content) for c in queue_peer.servicer.calls]
    assert contents == [
        (short_id, "part 0; part 1; part 2"),
        (long_id, "part 0; part 1; part 2"),
    ]
    assert await store.existing_job_ids([long_id, short_id]) == set()
