"""The one factory services call: the configured adapter, schema and indexes ensured."""

from __future__ import annotations

from services.common.store._config import StoreConfig
from services.common.store._interface import Store
from services.common.store.mongo import MongoStore
from services.common.store.sqlite import SqliteStore


async def open_store(config: StoreConfig) -> Store:
    """Open the configured adapter; creates schema/indexes idempotently. Await it."""
    if config.backend == "mongodb":
        assert config.mongodb_uri is not None  # StoreConfig refuses mongodb without a URI
        return await MongoStore.open(config.mongodb_uri, config.mongodb_database)
    return await SqliteStore.open(
        config.sqlite_path,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
        synchronous=config.sqlite_synchronous,
    )
