"""The processor definitions as queue_svc needs them: to pick a new job's pool."""

from __future__ import annotations

import asyncio
import logging
import time

from services.common.errors import ChatbotError, InvalidInputError, UnavailableError
from services.common.media_jobs import DefinitionsDocument
from services.common.routing import ProcessorDefinitions, default_definitions

log = logging.getLogger("queue_svc.routing")


class ProcessorRouting:
    """The stored table (services.common.media_jobs.DefinitionsDocument), re-read every
    `refresh_seconds` so operator edits apply without a restart. A broken document keeps
    the last good table (or the defaults) and is logged; media_svc names the defect."""

    def __init__(self, document: DefinitionsDocument, refresh_seconds: float = 10.0) -> None:
        self._document = document
        self._refresh = refresh_seconds
        self._cached: ProcessorDefinitions | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._cached is not None and time.monotonic() - self._loaded_at < self._refresh

    async def definitions(self) -> ProcessorDefinitions:
        if self._cached is not None and self._fresh():
            return self._cached
        async with self._lock:
            if self._cached is not None and self._fresh():
                return self._cached
            try:
                document = await self._document.read()
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
