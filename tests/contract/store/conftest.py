"""One contract suite, two legs: SQLite always, MongoDB when MONGODB_URI is set."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from services.common.store import Store, StoreConfig, open_store

LEGS = ("sqlite", "mongodb")
_LEG_STATUS = pytest.StashKey[dict[str, str]]()
_NO_MONGO = "MONGODB_URI not set"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LEG_STATUS] = {}


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    status = config.stash.get(_LEG_STATUS, {})
    if not status:
        return
    legs = " ".join(f"{leg}={status.get(leg, 'not collected')}" for leg in LEGS)
    terminalreporter.write_line(f"store contract legs: {legs}")


@pytest.fixture(params=LEGS)
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    leg: str = request.param
    status = request.config.stash[_LEG_STATUS]
    if leg == "sqlite":
        status["sqlite"] = "ran"
        yield StoreConfig(backend="sqlite", sqlite_path=tmp_path / "store.sqlite3")
        return
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        status.setdefault("mongodb", f"skipped ({_NO_MONGO})")
        pytest.skip(_NO_MONGO)
    status["mongodb"] = "ran"
    database = f"store_contract_{uuid.uuid4().hex[:12]}"
    yield StoreConfig(backend="mongodb", mongodb_uri=uri, mongodb_database=database)

    async def drop() -> None:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
        try:
            await client.drop_database(database)
        finally:
            await client.close()

    asyncio.run(drop())


@pytest.fixture
async def store(store_config: StoreConfig) -> AsyncIterator[Store]:
    opened = await open_store(store_config)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def processes() -> Iterator[ProcessPoolExecutor]:
    """Real OS processes (spawned: no inherited threads or event loops)."""
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def barrier(tmp_path: Path) -> Path:
    directory = tmp_path / "barrier"
    directory.mkdir()
    return directory
