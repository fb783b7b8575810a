"""The processor definitions as queue_svc needs them: to pick a new job's pool."""

from __future__ import annotations

import asyncio
import logging
import time

from services.common.errors import ChatbotError, InvalidInputError, UnavailableError
from services.common.routing import ProcessorDefinitions, default_definitions
from services.common.store import DefinitionsStore

log = logging.getLogger("queue_svc.routing")


class ProcessorRouting:
    """Reads `_mediaProcessorDefinitions` from the store, seeding the defaults when it is
    missing, and re-reads it every `refresh_seconds` so operator edits apply without a
    restart. A broken document keeps the last good table (or the defaults) and is logged.
    """

    def __init__(self, store: DefinitionsStore, refresh_seconds: float = 10.0) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._cached: ProcessorDefinitions | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def definitions(self) -> ProcessorDefinitions:
        if self._cached is not None and time.monotonic() - self._loaded_at < self._refresh:
            return self._cached
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._loaded_at < self._refresh:
                return self._cached
            try:
                document = await self._store.get_processor_definitions()
                if document is None:
                    defaults = default_definitions()
                    await self._store.seed_processor_definitions(defaults.to_document())
                    document = await self._store.get_processor_definitions()
                    if document is None:
                        document = defaults.to_document()
            except Exception as exc:
                if self._cached is not None:
                    log.warning("definitions reload failed; keeping the last table: %s", exc)
                    self._loaded_at = time.monotonic()
                    return self._cached
                if isinstance(exc, ChatbotError) and not isinstance(exc, UnavailableError):
                    raise
                raise UnavailableError(f"store: cannot read processor definitions: {exc}") from exc
            try:
                self._cached = ProcessorDefinitions.from_document(document)
            except InvalidInputError as exc:
                log.error("stored processor definitions are invalid; %s", exc)
                if self._cached is None:
                    self._cached = default_definitions()
            self._loaded_at = time.monotonic()
            return self._cached
