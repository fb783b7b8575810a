"""The one factory services call: the configured adapter, schema and indexes ensured."""

from __future__ import annotations

from services.common.errors import UnavailableError
from services.common.store._config import StoreConfig
from services.common.store._interface import Store
from services.common.store.sqlite import SqliteStore


async def open_store(config: StoreConfig) -> Store:
    """Open the configured adapter; creates schema/indexes idempotently. Await it."""
    if config.backend == "mongodb":
        raise UnavailableError("the MongoDB adapter is not committed yet; use STORE_BACKEND=sqlite")
    return await SqliteStore.open(
        config.sqlite_path,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
        synchronous=config.sqlite_synchronous,
    )
