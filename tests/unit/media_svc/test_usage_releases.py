"""Staged-byte releases of one turn share one counter write per bot."""

from __future__ import annotations

import asyncio

from services.common.store import Store
from services.media_svc.usage_releases import CoalescedReleases


class CountingCounter:
    """The real store's counter, its writes recorded."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes: list[tuple[str, int]] = []

    async def add_media_usage(self, bot_id: str, delta: int) -> int:
        self.writes.append((bot_id, delta))
        return await self._store.add_media_usage(bot_id, delta)

    async def media_usage(self, bot_id: str) -> int:
        return await self._store.media_usage(bot_id)


async def test_releases_of_one_turn_are_one_write_per_bot(store: Store) -> None:
    await store.add_media_usage("bot-1", 100)
    await store.add_media_usage("bot-2", 50)
    counting = CountingCounter(store)
    releases = CoalescedReleases(counting)
    left = await asyncio.gather(
        releases.add_media_usage("bot-1", -10),
        releases.add_media_usage("bot-2", -5),
        releases.add_media_usage("bot-1", -20),
    )
    assert list(left) == [70, 45, 70]
    assert sorted(counting.writes) == [("bot-1", -30), ("bot-2", -5)]
    assert await releases.media_usage("bot-1") == 70


async def test_summed_releases_clamp_at_zero_as_single_ones_do(store: Store) -> None:
    await store.add_media_usage("bot-1", 10)
    releases = CoalescedReleases(CountingCounter(store))
    assert list(
        await asyncio.gather(
            releases.add_media_usage("bot-1", -8), releases.add_media_usage("bot-1", -8)
        )
    ) == [0, 0]
    assert await store.media_usage("bot-1") == 0


async def test_additions_are_written_at_once_and_unsummed(store: Store) -> None:
    counting = CountingCounter(store)
    releases = CoalescedReleases(counting)
    assert list(
        await asyncio.gather(
            releases.add_media_usage("bot-1", 40), releases.add_media_usage("bot-1", 2)
        )
    ) == [40, 42]
    assert counting.writes == [("bot-1", 40), ("bot-1", 2)]
    await releases.close()
