"""MongoDB failures injected on purpose (SecantusDB's failCommand): a broken change
stream, a write-concern error; and the one-time fence backfill."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from services.common.store.mongo import MongoStore
from tests.helpers import secantus
from tests.helpers.store_factories import message, new_job
from tests.helpers.waiting import wait_until


@pytest.fixture
async def database(
    secantus_replset: secantus.Server, secantus_standalone: secantus.Server
) -> AsyncIterator[str]:
    """A throw-away database name, dropped on both servers afterwards."""
    name = f"failures_{uuid.uuid4().hex[:12]}"
    yield name
    for server in (secantus_replset, secantus_standalone):
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
        try:
            await client.drop_database(name)
        finally:
            await client.close()


async def test_a_broken_change_stream_is_reopened_and_wakes_waiters_again(
    secantus_replset: secantus.Server, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    uri = secantus_replset.uri
    store = await MongoStore.open(uri, database)
    other = await MongoStore.open(uri, database)
    admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        await store.wait_for_jobs(0.01)  # starts the stream
        await wait_until(lambda: store.change_stream_open, 15, every=0.01)
        # The stream's next getMore fails with an error it does not resume from.
        await admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 1},
                "data": {"failCommands": ["getMore"], "errorCode": 2, "errmsg": "injected"},
            }
        )
        with caplog.at_level(logging.WARNING, logger="services.common.store.mongo"):
            await wait_until(lambda: not store.change_stream_open, 15, every=0.01)
            await wait_until(lambda: store.change_stream_open, 15, every=0.01)
        assert any("change stream" in r.getMessage() for r in caplog.records)

        # Woken by the re-opened stream, not by polling: with it open, a waiter
        # would otherwise sleep the whole 20 s.
        loop = asyncio.get_running_loop()

        async def create_later() -> None:
            await asyncio.sleep(0.3)
            assert await other.create_job(new_job())

        creating = asyncio.create_task(create_later())
        started = loop.time()
        await store.wait_for_jobs(20)
        waited = loop.time() - started
        await creating
        assert waited < 10, f"wait_for_jobs slept {waited:.1f} s through a create"
    finally:
        await admin.close()
        await other.close()
        await store.close()


async def test_a_write_concern_error_is_not_taken_for_duplicates(
    secantus_replset: secantus.Server, database: str
) -> None:
    """A batch whose only problem is duplicates counts as inserted; one that also got a
    write-concern error (writes perhaps not durable) must fail, not pass silently."""
    store = await MongoStore.open(secantus_replset.uri, database)
    admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(secantus_replset.uri)
    try:
        assert await store.insert_messages([message(1), message(2)]) == 2
        assert await store.insert_messages([message(2), message(3)]) == 1
        await admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 1},
                "data": {
                    "failCommands": ["insert"],
                    "writeConcernError": {"code": 64, "errmsg": "waiting for replication"},
                },
            }
        )
        with pytest.raises(PyMongoError, match="replication"):
            await store.insert_messages([message(3), message(4)])
    finally:
        await admin.close()
        await store.close()


async def test_the_fence_backfill_runs_once_per_database(
    secantus_standalone: secantus.Server, database: str
) -> None:
    """A job written before `fence` existed gets it from `attempts` at the first open;
    later opens find the marker and scan nothing (`fence` has no index)."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(secantus_standalone.uri)
    try:
        jobs = client[database]["media_processing_jobs"]
        await jobs.insert_one({"_id": "old-1", "attempts": 3, "version": 4})
        store = await MongoStore.open(secantus_standalone.uri, database)
        await store.close()
        assert await jobs.find_one({"_id": "old-1"}, {"_id": 0}) == {
            "attempts": 3,
            "version": 5,
            "fence": 3,
        }
        marker = await client[database]["store_migrations"].find_one({"_id": "fence_backfill"})
        assert marker is not None
        # Written by an older process after the marker: left to `_job`'s fallback.
        await jobs.insert_one({"_id": "old-2", "attempts": 1, "version": 0})
        store = await MongoStore.open(secantus_standalone.uri, database)
        await store.close()
        assert await jobs.find_one({"_id": "old-2"}, {"_id": 0}) == {"attempts": 1, "version": 0}
    finally:
        await client.close()
