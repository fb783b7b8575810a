"""A service whose MongoDB user may only read what it does not own still starts and works
(the least-privilege deployment depends on it): on SecantusDB with authentication, after
the provisioning run made the indexes, a user with read-only rights opens the store
(index creation it may not do is left to provisioning), reads, and its refused seed of
the processor definitions is no error; its writes are refused by the server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from services.common.errors import UnavailableError
from services.common.routing import default_definitions
from services.common.store import BotConfig, StoreConfig, open_store
from services.common.store.db_roles import ROLES
from services.common.store.provision import provision
from tests.helpers import secantus


async def test_a_read_only_user_opens_the_store_and_reads(tmp_path: Path) -> None:
    if secantus.executable() is None:
        pytest.fail(f"{secantus.EXECUTABLE} is not installed: run `make venv`")
    database = f"restricted_{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    data.mkdir()
    server = secantus.start(tmp_path / "open", replica_set=True, storage=data)
    try:
        await provision(server.uri, database, {s: f"pw-{s}" for s in ROLES})
        admin = await open_store(
            StoreConfig("mongodb", mongodb_uri=server.uri, mongodb_database=database)
        )
        await admin.put_bot_config(BotConfig(bot_id="bot-1", max_messages=7))
        await admin.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server.uri)
        try:
            await client[database].command(
                "createUser", "reader", pwd="pw-reader", roles=[{"role": "read", "db": database}]
            )
        finally:
            await client.close()
    finally:
        server.stop()

    server = secantus.start(tmp_path / "auth", replica_set=True, storage=data, auth=True)
    try:
        base = f"mongodb://reader:pw-reader@127.0.0.1:{server.port}/"
        uri = f"{base}?replicaSet=secantus&authSource={database}&serverSelectionTimeoutMS=10000"
        store = await open_store(StoreConfig("mongodb", mongodb_uri=uri, mongodb_database=database))
        try:
            config = await store.get_bot_config("bot-1")
            assert config is not None and config.max_messages == 7
            assert await store.list_api_tokens("bot-1") == []
            document = default_definitions().to_document()
            assert await store.seed_processor_definitions(document) is False
            assert await store.get_processor_definitions() is None
            with pytest.raises(OperationFailure) as refused:
                await store.put_bot_config(BotConfig(bot_id="bot-1", max_messages=9))
            assert refused.value.code == 13
            config = await store.get_bot_config("bot-1")
            assert config is not None and config.max_messages == 7
        finally:
            await store.close()
        stranger = f"{base.replace('reader:pw-reader', 'reader:wrong')}?replicaSet=secantus"
        with pytest.raises(UnavailableError, match=r"(?i)auth"):
            await open_store(
                StoreConfig(
                    "mongodb",
                    mongodb_uri=f"{stranger}&authSource={database}&serverSelectionTimeoutMS=3000",
                    mongodb_database=database,
                )
            )
    finally:
        server.stop()
