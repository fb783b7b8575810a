"""One contract suite, several legs: SQLite always; MongoDB against SecantusDB, started
here in both of its modes (replica set: transactions and change streams; standalone: the
polling and copy-then-delete paths); and MongoDB at MONGODB_URI when that is set."""

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
from tests.helpers import secantus
from tests.helpers.store_legs import COLLECTED_LEGS, LEG_STATUS, NO_MONGO

_NO_SECANTUS = f"{secantus.EXECUTABLE} not installed (package secantusdb: run `make venv`)"


def _secantus(
    tmp_path_factory: pytest.TempPathFactory, replica_set: bool
) -> Iterator[secantus.Server]:
    if secantus.executable() is None:
        # Part of the venv (`make venv`): its absence is a broken setup, never a skip.
        pytest.fail(_NO_SECANTUS)
    mode = "replset" if replica_set else "standalone"
    # Test commands (configureFailPoint) let a test break a change stream on purpose;
    # the server listens on loopback only.
    server = secantus.start(
        tmp_path_factory.mktemp(f"secantus-{mode}"), replica_set, test_commands=True
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def secantus_replset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secantus.Server]:
    """One in-memory SecantusDB replica set (one member) for the whole session."""
    yield from _secantus(tmp_path_factory, replica_set=True)


@pytest.fixture(scope="session")
def secantus_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secantus.Server]:
    """One in-memory standalone SecantusDB for the whole session."""
    yield from _secantus(tmp_path_factory, replica_set=False)


def _mongodb_uri(request: pytest.FixtureRequest, leg: str) -> str:
    """The server of a MongoDB leg; the SecantusDB servers start on first use."""
    status = request.config.stash[LEG_STATUS]
    if leg == "mongodb-uri":
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            status.setdefault(leg, f"skipped ({NO_MONGO})")
            pytest.skip(NO_MONGO)
        return uri
    fixture = "secantus_replset" if leg == "mongodb-secantus-replset" else "secantus_standalone"
    try:
        server: secantus.Server = request.getfixturevalue(fixture)
    except pytest.fail.Exception:
        status.setdefault(leg, f"failed ({_NO_SECANTUS})")
        raise
    return server.uri


@pytest.fixture(params=COLLECTED_LEGS)
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    leg: str = request.param
    status = request.config.stash[LEG_STATUS]
    if leg == "sqlite":
        status["sqlite"] = "ran"
        yield StoreConfig(backend="sqlite", sqlite_path=tmp_path / "store.sqlite3")
        return
    uri = _mongodb_uri(request, leg)
    status[leg] = "ran"
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
