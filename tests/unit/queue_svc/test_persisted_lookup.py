"""Provider-id lookups of one event-loop turn share one store read per bot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from services.common.errors import UnavailableError
from services.common.store import Store, StoreConfig, open_store
from services.queue_svc.persisted_lookup import PersistedLookup
from tests.helpers.store_factories import message


class CountingStore:
    """The real store's reads, counted; `broken` makes them fail as a store outage would."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads: list[tuple[str, list[str]]] = []
        self.broken = False

    async def persisted_provider_ids(
        self, bot_id: str, provider_message_ids: Collection[str]
    ) -> set[str]:
        self.reads.append((bot_id, sorted(provider_message_ids)))
        if self.broken:
            raise OSError("disk gone")
        return await self._store.persisted_provider_ids(bot_id, provider_message_ids)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "s.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


async def test_one_read_per_bot_answers_each_caller(store: Store) -> None:
    await store.insert_messages(
        [message(1), message(2), message(7, bot_id="bot-2", provider_message_id="WA-7")]
    )
    counting = CountingStore(store)
    lookup = PersistedLookup(counting)
    asked = [("bot-1", "WA-1"), ("bot-2", "WA-1"), ("bot-1", "WA-404"), ("bot-2", "WA-7")]
    answers = await asyncio.gather(*(lookup.persisted(bot, pid) for bot, pid in asked))
    assert answers == [True, False, False, True]
    assert sorted(counting.reads) == [("bot-1", ["WA-1", "WA-404"]), ("bot-2", ["WA-1", "WA-7"])]


async def test_a_store_failure_fails_every_caller_of_the_batch(store: Store) -> None:
    counting = CountingStore(store)
    counting.broken = True
    lookup = PersistedLookup(counting)
    answers = await asyncio.gather(
        lookup.persisted("bot-1", "WA-1"), lookup.persisted("bot-1", "WA-2"), return_exceptions=True
    )
    assert all(isinstance(a, UnavailableError) for a in answers)
    counting.broken = False
    assert await lookup.persisted("bot-1", "WA-1") is False
