"""Which provider ids of new media messages the store holds already, asked once per
event-loop turn per bot.

A batched InjectPlaceholders call starts every placeholder in one turn, and each new
provider id needs the store's answer (a resent frame whose id left the dedup memory):
one read per turn and bot instead of one per placeholder, each with its own savepoint
and future in the store's group commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Protocol

from services.common.call_batcher import CallBatcher
from services.queue_svc.service_types import store_call

# Provider ids one read asks about; the store splits a long IN list itself.
MAX_LOOKUP_BATCH = 512


class ProviderIdStore(Protocol):
    async def persisted_provider_ids(
        self, bot_id: str, provider_message_ids: Collection[str]
    ) -> set[str]: ...


class PersistedLookup:
    def __init__(self, store: ProviderIdStore) -> None:
        self._store = store
        self._batcher: CallBatcher[tuple[str, str], bool] = CallBatcher(
            self._lookup, max_batch=MAX_LOOKUP_BATCH
        )

    async def persisted(self, bot_id: str, provider_message_id: str) -> bool:
        """True when the store holds a message of this bot under this provider id."""
        return await self._batcher.call((bot_id, provider_message_id))

    async def _lookup(self, items: list[tuple[str, str]]) -> Sequence[bool]:
        by_bot: dict[str, list[str]] = {}
        for bot_id, pid in items:
            by_bot.setdefault(bot_id, []).append(pid)
        found = await asyncio.gather(
            *(
                store_call(
                    self._store.persisted_provider_ids(bot_id, pids), "persisted_provider_ids"
                )
                for bot_id, pids in by_bot.items()
            )
        )
        held = {(bot_id, pid) for bot_id, ids in zip(by_bot, found, strict=True) for pid in ids}
        return [item in held for item in items]
