"""Processor definitions: seeded when missing, reloaded when changed, validated whole.

A document is accepted only if it parses (services.common.routing validates the routing
table: one pool per job) and every pool's processor exists and accepts its options. A
rejected document is logged and the table in force stays; jobs keep being processed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidInputError
from services.common.routing import (
    MediaCondition,
    PoolDefinition,
    ProcessorDefinitions,
    default_definitions,
)
from services.common.store import Store
from services.media_svc.processors.base import Processor
from services.media_svc.processors.registry import ProcessorFactory, ProcessorRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActivePool:
    """A pool definition with its processor built and its options validated."""

    definition: PoolDefinition
    factory: ProcessorFactory
    processor: Processor


@dataclass(frozen=True, slots=True)
class LoadedDefinitions:
    definitions: ProcessorDefinitions
    pools: tuple[ActivePool, ...]
    document: Mapping[str, Any]

    def pool(self, name: str) -> ActivePool | None:
        return next((p for p in self.pools if p.definition.name == name), None)


def build(document: Mapping[str, Any], registry: ProcessorRegistry) -> LoadedDefinitions:
    """Parses, validates and instantiates; InvalidInputError naming the first defect."""
    definitions = ProcessorDefinitions.from_document(document)
    pools = []
    for pool in definitions.pools:
        try:
            factory = registry.factory(pool.processor)
            processor = factory(pool.options)
        except InvalidInputError as exc:
            raise InvalidInputError(f"definitions: pool {pool.name!r}: {exc}") from exc
        pools.append(ActivePool(pool, factory, processor))
    return LoadedDefinitions(definitions, tuple(pools), dict(document))


def parse_route(route: str) -> tuple[MediaCondition, str, str] | None:
    """`condition|kind|mime` → parts; None for a key this version cannot read."""
    parts = route.split("|", 2)
    if len(parts) != 3:
        return None
    try:
        return MediaCondition(parts[0]), parts[1], parts[2]
    except ValueError:
        return None


class DefinitionsManager:
    """Holds the table in force; `reload()` swaps it when the stored document changes."""

    def __init__(self, store: Store, registry: ProcessorRegistry) -> None:
        self._store = store
        self._registry = registry
        self._current = build(default_definitions().to_document(), registry)

    @property
    def current(self) -> LoadedDefinitions:
        return self._current

    async def start(self) -> LoadedDefinitions:
        """Seeds the defaults when the store has none (idempotent across replicas),
        then loads the stored table; a bad stored table leaves the defaults in force."""
        if await self._store.seed_processor_definitions(default_definitions().to_document()):
            log.info("seeded the default processor definitions")
        await self.reload()
        return self._current

    async def reload(self) -> bool:
        """True when a changed, valid document was put in force."""
        document = await self._store.get_processor_definitions()
        if document is None:
            log.warning("processor definitions document missing; seeding the defaults again")
            await self._store.seed_processor_definitions(default_definitions().to_document())
            return False
        document = {k: v for k, v in document.items() if k != "_id"}
        if document == self._current.document:
            await self.reroute_pending()
            return False
        try:
            loaded = build(document, self._registry)
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
        """Points pending jobs whose route now resolves to another pool at that pool."""
        moved = 0
        definitions = self._current.definitions
        for route, pool in (await self._store.pending_routes()).items():
            parsed = parse_route(route)
            target = definitions.resolve(*parsed) if parsed else definitions.fallback_pool.name
            if target != pool:
                count = await self._store.set_pool_for_route(route, target)
                moved += count
                log.info(
                    "re-routed %d pending jobs of route %s: %s → %s", count, route, pool, target
                )
        return moved
