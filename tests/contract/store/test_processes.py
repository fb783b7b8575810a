"""Several OS processes on one store: claims, seeding, leases, moves, wake-ups."""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from services.common.store import JobCollection, JobStatus, Store, StoreConfig
from tests.helpers import store_workers
from tests.helpers.store_factories import new_job

JOBS = 500
# SecantusDB on a loaded 2-core machine claims and completes ~10 jobs a second per
# process (500 jobs: 88 s in replica-set mode), so the MongoDB legs race on fewer jobs:
# enough that both processes claim many, each leg within a minute or two.
MONGO_JOBS = 100
MOVE_RACE_JOBS = {"sqlite": 200, "mongodb": 60}


def _jobs(config: StoreConfig) -> int:
    return JOBS if config.backend == "sqlite" else MONGO_JOBS


async def test_two_processes_never_claim_the_same_job(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    count = _jobs(store_config)
    jobs = [new_job(pool="audio" if i % 2 else "image") for i in range(count)]
    created = await asyncio.gather(*(store.create_job(job) for job in jobs))
    assert all(created)
    loop = asyncio.get_running_loop()
    runs = [
        loop.run_in_executor(
            processes,
            store_workers.claim_until_empty,
            store_config,
            barrier,
            f"worker-{n}",
            2,
            ["image", "audio"],
        )
        for n in range(2)
    ]
    first, second = await asyncio.gather(*runs)
    assert set(first).isdisjoint(second)
    assert len(first) + len(second) == count == len(set(first) | set(second))
    assert set(first) | set(second) == {j.media_processing_id for j in jobs}
    # Both really took part (the race was real), and every job was completed once.
    assert first and second
    done = await store.list_jobs("bot-1", JobCollection.ACTIVE)
    assert len(done) == count
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in done)
    owner = {job_id: "worker-0" for job_id in first} | {job_id: "worker-1" for job_id in second}
    assert all(j.result == j.claimed_by == owner[j.media_processing_id] for j in done)


async def test_two_processes_seed_definitions_exactly_once(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    loop = asyncio.get_running_loop()
    docs = [{"pools": [{"name": f"from-{n}"}]} for n in range(2)]
    outcomes = await asyncio.gather(
        *(
            loop.run_in_executor(
                processes, store_workers.seed_definitions, store_config, barrier, f"s{n}", 2, doc
            )
            for n, doc in enumerate(docs)
        )
    )
    assert sorted(outcomes) == [False, True]
    assert await store.get_processor_definitions() == docs[outcomes.index(True)]


async def test_two_processes_race_for_the_cleanup_lease(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    loop = asyncio.get_running_loop()
    outcomes = await asyncio.gather(
        *(
            loop.run_in_executor(
                processes, store_workers.acquire_lease, store_config, barrier, f"r{n}", 2, "cleanup"
            )
            for n in range(2)
        )
    )
    assert sorted(outcomes) == [False, True]
    winner = f"r{outcomes.index(True)}"
    assert await store.acquire_lease("cleanup", winner, 30) is True
    assert await store.acquire_lease("cleanup", "r-late", 30) is False


async def test_wait_for_jobs_wakes_on_a_job_created_by_another_process(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    loop = asyncio.get_running_loop()
    creator = loop.run_in_executor(
        processes, store_workers.create_job_later, store_config, barrier, 0.2, "bot-remote"
    )
    await asyncio.to_thread(store_workers.arrive, barrier, "waiter", 2)
    started = loop.time()
    await store.wait_for_jobs(20)
    waited = loop.time() - started
    created_id = await creator
    assert waited < 10, f"wait_for_jobs slept {waited:.1f} s through a remote create"
    claim = await store.claim_job(["image"], "w1", 30)
    assert claim is not None and claim.job.media_processing_id == created_id


async def test_moves_racing_completions_lose_and_duplicate_nothing(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    count = MOVE_RACE_JOBS[store_config.backend]
    jobs = [new_job() for _ in range(count)]
    for job in jobs:
        assert await store.create_job(job)
    claims = []
    while (claim := await store.claim_job(["image"], "w-main", 60)) is not None:
        claims.append(claim)
    assert len(claims) == count

    loop = asyncio.get_running_loop()
    mover = loop.run_in_executor(
        processes, store_workers.shuttle_bot_jobs, store_config, barrier, "bot-1", 40
    )
    await asyncio.to_thread(store_workers.arrive, barrier, "completer", 2)
    landed: dict[str, JobCollection | None] = {}
    for claim in claims:
        job_id = claim.job.media_processing_id
        landed[job_id] = await store.complete_job(job_id, claim.token, f"result of {job_id}")
    # The race is over: the mover finishes its round (back in active) and stops.
    (barrier / store_workers.STOP_SHUTTLE).touch()
    moved = await mover
    assert moved > 0

    # Every completion landed somewhere, and each job exists exactly once with its result.
    assert all(where in (JobCollection.ACTIVE, JobCollection.HOLDING) for where in landed.values())
    active = await store.list_jobs("bot-1", JobCollection.ACTIVE)
    holding = await store.list_jobs("bot-1", JobCollection.HOLDING)
    everything = active + holding
    assert len(everything) == count
    assert {j.media_processing_id for j in everything} == {j.media_processing_id for j in jobs}
    assert all(
        j.status is JobStatus.COMPLETED and j.result == f"result of {j.media_processing_id}"
        for j in everything
    )
    # The shuttle ends each round back in active.
    assert len(active) == count


async def test_opposite_moves_from_two_processes_lose_and_duplicate_nothing(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    """StopBot and StartBot for one bot at the same time, over and over, from two
    processes (two queue_svc shards during a hand-over): every job survives, once.
    Real contention (on a replica set: transactions in write conflict, re-run); the
    exact losing interleaving is forced in test_interleavings.py, since this one hits it
    only by chance."""
    count = 40 if store_config.backend == "sqlite" else 20
    jobs = [new_job() for _ in range(count)]
    for job in jobs:
        assert await store.create_job(job)
    half = {j.media_processing_id for j in jobs[: count // 2]}
    # Half the jobs start in holding, so both directions have work from the first round.
    for job_id in half:
        assert await store.fail_job(job_id, "parked")
        assert await store.requeue_failed_job(job_id, JobCollection.HOLDING)
    loop = asyncio.get_running_loop()
    directions = [
        ("stop", JobCollection.ACTIVE, JobCollection.HOLDING),
        ("start", JobCollection.HOLDING, JobCollection.ACTIVE),
    ]
    moved = await asyncio.gather(
        *(
            loop.run_in_executor(
                processes,
                store_workers.move_bot_jobs_repeatedly,
                store_config,
                barrier,
                name,
                "bot-1",
                source,
                target,
                15,
            )
            for name, source, target in directions
        )
    )
    assert all(m > 0 for m in moved), moved
    live = [
        j.media_processing_id
        for c in (JobCollection.ACTIVE, JobCollection.HOLDING)
        for j in await store.list_jobs("bot-1", c)
    ]
    assert sorted(live) == sorted(j.media_processing_id for j in jobs)
    assert await store.list_failed_jobs("bot-1") == []


async def test_two_shards_updating_the_active_bot_registry_drop_nothing(
    store: Store, store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    # Already registered before the race: neither shard's updates may drop it.
    assert await store.set_bot_active("bot-early", True)
    loop = asyncio.get_running_loop()
    bots = {n: [f"shard{n}-bot-{i}" for i in range(60)] for n in range(2)}
    answers = await asyncio.gather(
        *(
            loop.run_in_executor(
                processes, store_workers.register_bots, store_config, barrier, f"s{n}", 2, bots[n]
            )
            for n in range(2)
        )
    )
    assert all(all(a) for a in answers)  # every call changed the registry
    kept = {b for n in range(2) for i, b in enumerate(bots[n]) if i % 2 == 0}
    assert await store.active_bots() == sorted(kept | {"bot-early"})


async def test_processes_opening_a_new_sqlite_file_at_once_all_get_in(
    store_config: StoreConfig, processes: ProcessPoolExecutor, barrier: Path
) -> None:
    """Two queue_svc shards (or media_svc replicas) starting together on a new file:
    the one switching it to WAL locks it for a moment; the other waits, not fails."""
    if store_config.backend != "sqlite":
        pytest.skip("SQLite files only")
    loop = asyncio.get_running_loop()
    opened = await asyncio.gather(
        *(
            loop.run_in_executor(
                processes, store_workers.open_new_files, store_config, barrier, f"p{n}", 2
            )
            for n in range(2)
        )
    )
    assert opened == [10, 10]
