"""Code that runs in child processes (spawned) against the same store as the test.

Each function is synchronous and importable, so a `spawn` process pool can run it; the
children start together through a file barrier so they really race.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from services.common.store import JobCollection, StoreConfig, open_store
from tests.helpers.store_factories import new_job


def _barrier(directory: Path, name: str, parties: int, timeout: float = 30.0) -> None:
    (directory / f"ready-{name}").touch()
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {directory}: not all {parties} parties arrived")
        time.sleep(0.001)


def claim_until_empty(
    config: StoreConfig, barrier: Path, name: str, parties: int, pools: list[str]
) -> list[str]:
    """Claim and complete jobs until none is left; the ids this process claimed."""

    async def run() -> list[str]:
        store = await open_store(config)
        try:
            _barrier(barrier, name, parties)
            claimed: list[str] = []
            while (claim := await store.claim_job(pools, name, 60)) is not None:
                claimed.append(claim.job.media_processing_id)
                where = await store.complete_job(claim.job.media_processing_id, claim.token, name)
                assert where is JobCollection.ACTIVE
            return claimed
        finally:
            await store.close()

    return asyncio.run(run())


def seed_definitions(
    config: StoreConfig, barrier: Path, name: str, parties: int, doc: dict[str, Any]
) -> bool:
    async def run() -> bool:
        store = await open_store(config)
        try:
            _barrier(barrier, name, parties)
            return await store.seed_processor_definitions(doc)
        finally:
            await store.close()

    return asyncio.run(run())


def acquire_lease(config: StoreConfig, barrier: Path, name: str, parties: int, lease: str) -> bool:
    async def run() -> bool:
        store = await open_store(config)
        try:
            _barrier(barrier, name, parties)
            return await store.acquire_lease(lease, name, 30)
        finally:
            await store.close()

    return asyncio.run(run())


def create_job_later(config: StoreConfig, barrier: Path, delay: float, bot_id: str) -> str:
    """After the barrier and `delay`, create one job; its id."""

    async def run() -> str:
        store = await open_store(config)
        try:
            _barrier(barrier, "creator", 2)
            await asyncio.sleep(delay)
            job = new_job(bot_id=bot_id)
            assert await store.create_job(job)
            return job.media_processing_id
        finally:
            await store.close()

    return asyncio.run(run())


STOP_SHUTTLE = "stop-shuttle"


def shuttle_bot_jobs(config: StoreConfig, barrier: Path, bot_id: str, rounds: int) -> int:
    """Move one bot's jobs active → holding → active, at least once and at most `rounds`
    times, until the file `STOP_SHUTTLE` appears in `barrier`; total moved."""

    async def run() -> int:
        store = await open_store(config)
        try:
            _barrier(barrier, "mover", 2)
            moved = 0
            for done in range(rounds):
                if done and (barrier / STOP_SHUTTLE).exists():
                    break
                moved += await store.move_bot_jobs(
                    bot_id, JobCollection.ACTIVE, JobCollection.HOLDING
                )
                moved += await store.move_bot_jobs(
                    bot_id, JobCollection.HOLDING, JobCollection.ACTIVE
                )
            return moved
        finally:
            await store.close()

    return asyncio.run(run())


def move_bot_jobs_repeatedly(
    config: StoreConfig,
    barrier: Path,
    name: str,
    bot_id: str,
    source: JobCollection,
    target: JobCollection,
    rounds: int,
) -> int:
    """Like StopBot (or StartBot) issued `rounds` times in a row; total moved."""

    async def run() -> int:
        store = await open_store(config)
        try:
            _barrier(barrier, name, 2)
            moved = 0
            for _ in range(rounds):
                moved += await store.move_bot_jobs(bot_id, source, target)
                await asyncio.sleep(0)
            return moved
        finally:
            await store.close()

    return asyncio.run(run())


def register_bots(
    config: StoreConfig, barrier: Path, name: str, parties: int, bot_ids: list[str]
) -> list[bool]:
    """Like one queue_svc shard: mark each bot active, then every second one inactive
    again (StartBot / StopBot); what each call answered."""

    async def run() -> list[bool]:
        store = await open_store(config)
        try:
            _barrier(barrier, name, parties)
            answers: list[bool] = []
            for i, bot_id in enumerate(bot_ids):
                answers.append(await store.set_bot_active(bot_id, True))
                if i % 2:
                    answers.append(await store.set_bot_active(bot_id, False))
            return answers
        finally:
            await store.close()

    return asyncio.run(run())


def open_new_files(config: StoreConfig, barrier: Path, name: str, parties: int) -> int:
    """After the barrier, open every `<n>.sqlite3` in `config`'s directory at the same
    moment as the other parties (each file new), write one value, close; how many."""

    async def run() -> int:
        _barrier(barrier, name, parties)
        opened = 0
        for n in range(10):
            path = config.sqlite_path.parent / f"fresh-{n}.sqlite3"
            store = await open_store(StoreConfig(backend="sqlite", sqlite_path=path))
            try:
                await store.set_bot_active(f"{name}-{n}", True)
                opened += 1
            finally:
                await store.close()
        return opened

    return asyncio.run(run())


def arrive(barrier: Path, name: str, parties: int) -> None:
    """The test process's own arrival at a barrier shared with children."""
    _barrier(barrier, name, parties)
