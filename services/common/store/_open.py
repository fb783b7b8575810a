"""The one factory services call: the configured adapter, schema and indexes ensured."""

from __future__ import annotations

from services.common.errors import UnavailableError
from services.common.store._config import StoreConfig
from services.common.store._interface import Store


async def open_store(config: StoreConfig) -> Store:
    """Open the configured adapter; creates schema/indexes idempotently. Await it."""
    # Temporary: the adapters land in the next commits; the names are importable now.
    raise UnavailableError(f"store backend {config.backend!r}: adapter not committed yet")
