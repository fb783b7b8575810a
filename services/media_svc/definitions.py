"""Processor definitions as media_svc runs them: reloaded when changed, validated whole.

The document is read through services.common.media_jobs.DefinitionsDocument (seeded when
missing, as queue_svc reads it). It is accepted only if it parses (services.common.routing
validates the routing table: one pool per job) and every pool's processor exists and
accepts its options. A rejected document is logged and the table in force stays; jobs
keep being processed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.errors import InvalidInputError
from services.common.media_jobs import DefinitionsDocument, JobLifecycleStore, MediaJobs
from services.common.routing import PoolDefinition, ProcessorDefinitions
from services.common.store import DefinitionsStore
from services.media_svc.processors.contract import (
    AsyncProcessor,
    BlockingProcessor,
    ProcessorLimits,
)
from services.media_svc.processors.registry import ProcessorRegistry

log = logging.getLogger(__name__)


class RoutingStore(DefinitionsStore, JobLifecycleStore, Protocol):
    """The definitions document, and the pending jobs re-routed when it changes."""


@dataclass(frozen=True, slots=True)
class AsyncSpec:
    """An event-loop processor, built once per definition load."""

    processor: AsyncProcessor

    @property
    def limits(self) -> ProcessorLimits:
        return self.processor.limits


@dataclass(frozen=True, slots=True)
class BlockingSpec:
    """A worker-process processor: its type and its options, parsed in this process."""

    processor: type[BlockingProcessor[Any, Any]]
    options: Any

    @property
    def limits(self) -> ProcessorLimits:
        return self.processor.limits(self.options)


ProcessorSpec = AsyncSpec | BlockingSpec


@dataclass(frozen=True, slots=True)
class PoolDefaults:
    """The replica's defaults for what a pool definition leaves unset."""

    timeout_seconds: float = 300.0
    max_attempts: int = 3
    memory_limit_mb: int = 4096


@dataclass(frozen=True, slots=True)
class PoolSettings:
    timeout_seconds: float
    max_attempts: int
    # Address-space cap of each worker process of a blocking pool; 0 = none.
    memory_limit_mb: int


@dataclass(frozen=True, slots=True)
class ActivePool:
    """A pool definition with its processor validated and its run settings resolved."""

    definition: PoolDefinition
    spec: ProcessorSpec
    settings: PoolSettings


@dataclass(frozen=True, slots=True)
class LoadedDefinitions:
    definitions: ProcessorDefinitions
    pools: tuple[ActivePool, ...]
    document: Mapping[str, Any]

    def pool(self, name: str) -> ActivePool | None:
        return next((p for p in self.pools if p.definition.name == name), None)


def _spec(pool: PoolDefinition, registry: ProcessorRegistry) -> ProcessorSpec:
    kind = registry.type_of(pool.processor)
    if issubclass(kind, AsyncProcessor):
        return AsyncSpec(kind(pool.options))
    return BlockingSpec(kind, kind.parse_options(pool.options))


def build(
    document: Mapping[str, Any],
    registry: ProcessorRegistry,
    defaults: PoolDefaults | None = None,
) -> LoadedDefinitions:
    """Parses, validates and parses every pool's options (cheap: engines load later, in
    the pool's processes); InvalidInputError naming the first defect."""
    defaults = defaults or PoolDefaults()
    definitions = ProcessorDefinitions.from_document(document)
    pools = []
    for pool in definitions.pools:
        try:
            spec = _spec(pool, registry)
        except InvalidInputError as exc:
            raise InvalidInputError(f"definitions: pool {pool.name!r}: {exc}") from exc
        settings = PoolSettings(
            timeout_seconds=pool.timeout_seconds or defaults.timeout_seconds,
            max_attempts=pool.max_attempts or defaults.max_attempts,
            memory_limit_mb=pool.memory_limit_mb or defaults.memory_limit_mb,
        )
        pools.append(ActivePool(pool, spec, settings))
    return LoadedDefinitions(definitions, tuple(pools), dict(document))


class DefinitionsManager:
    """Holds the table in force; `reload()` swaps it when the stored document changes."""

    def __init__(
        self, store: RoutingStore, registry: ProcessorRegistry, defaults: PoolDefaults | None = None
    ) -> None:
        self._document = DefinitionsDocument(store)
        self._jobs = MediaJobs(store)
        self._registry = registry
        self._defaults = defaults or PoolDefaults()
        self._current = build(self._document.default_document(), registry, self._defaults)

    @property
    def current(self) -> LoadedDefinitions:
        return self._current

    async def start(self) -> LoadedDefinitions:
        """Seeds the defaults when the store has none, then loads the stored table; a bad
        stored table leaves the defaults in force."""
        await self._document.seed()
        await self.reload()
        return self._current

    async def reload(self) -> bool:
        """True when a changed, valid document was put in force."""
        document = await self._document.read()
        if document == self._current.document:
            await self.reroute_pending()
            return False
        try:
            loaded = build(document, self._registry, self._defaults)
        except InvalidInputError as exc:
            log.error(
                "processor definitions rejected, the previous table stays in force: %s. "
                "Fix the document `_mediaProcessorDefinitions` in bot_configurations.",
                exc,
            )
            return False
        self._current = loaded
        log.info(
            "processor definitions in force: %s",
            ", ".join(
                f"{p.definition.name}={p.definition.processor}x{p.definition.concurrency}"
                for p in loaded.pools
            ),
        )
        await self.reroute_pending()
        return True

    async def reroute_pending(self) -> int:
        return await self._jobs.reroute_pending(self._current.definitions)
