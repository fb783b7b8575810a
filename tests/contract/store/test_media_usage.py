"""The per-bot staged-byte counter (the media quota) on every leg."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store


async def test_a_bot_without_media_has_used_nothing(store: Store) -> None:
    assert await store.media_usage("bot-a") == 0


async def test_additions_and_releases_are_per_bot(store: Store) -> None:
    assert await store.add_media_usage("bot-a", 1000) == 1000
    assert await store.add_media_usage("bot-a", 250) == 1250
    assert await store.add_media_usage("bot-b", 7) == 7
    assert await store.add_media_usage("bot-a", -1000) == 250
    assert await store.media_usage("bot-a") == 250
    assert await store.media_usage("bot-b") == 7


async def test_the_counter_never_goes_below_zero(store: Store) -> None:
    # Bytes a crash left uncounted may still be released when their object is deleted.
    assert await store.add_media_usage("bot-a", -500) == 0
    assert await store.add_media_usage("bot-a", 300) == 300
    assert await store.add_media_usage("bot-a", -301) == 0
    assert await store.media_usage("bot-a") == 0


@pytest.mark.parametrize("delta", [True, 1.5, "10", 2**63])
async def test_a_malformed_change_is_refused_and_changes_nothing(
    store: Store, delta: object
) -> None:
    await store.add_media_usage("bot-a", 10)
    with pytest.raises(InvalidInputError):
        await store.add_media_usage("bot-a", delta)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await store.add_media_usage("", 1)
    assert await store.media_usage("bot-a") == 10


async def test_concurrent_changes_lose_nothing(store: Store) -> None:
    rng = random.Random(24)
    sizes = [rng.randrange(1, 10_000) for _ in range(40)]
    await asyncio.gather(*(store.add_media_usage("bot-a", size) for size in sizes))
    assert await store.media_usage("bot-a") == sum(sizes)
    released = sizes[:25]
    await asyncio.gather(
        *(store.add_media_usage("bot-a", -size) for size in released),
        *(store.add_media_usage("bot-a", size) for size in sizes[:5]),
    )
    assert await store.media_usage("bot-a") == sum(sizes) - sum(released) + sum(sizes[:5])
