"""Staged bytes released after delivery, written once per event-loop turn per bot.

Every delivered job deletes its staged object and gives its bytes back to the bot's
quota counter: under a burst, one counter write per job (each its own savepoint and
future in the store's group commit) for what one write per bot and turn says as well.
Only releases (negative deltas) are summed: the counter is clamped at zero after each
change, and for changes of one sign the sum clamps exactly as the changes one by one do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.common.call_batcher import CallBatcher
from services.common.media_store import MediaUsageCounter

# Releases one write may sum; a turn with more writes again.
MAX_RELEASE_BATCH = 256


class CoalescedReleases:
    """A `MediaUsageCounter` whose releases of one turn share a write per bot; each
    caller gets the counter as that write left it."""

    def __init__(self, usage: MediaUsageCounter) -> None:
        self._usage = usage
        self._batcher: CallBatcher[tuple[str, int], int] = CallBatcher(
            self._release, max_batch=MAX_RELEASE_BATCH
        )

    async def add_media_usage(self, bot_id: str, delta: int) -> int:
        if delta >= 0:
            return await self._usage.add_media_usage(bot_id, delta)
        return await self._batcher.call((bot_id, delta))

    async def media_usage(self, bot_id: str) -> int:
        return await self._usage.media_usage(bot_id)

    async def _release(self, items: list[tuple[str, int]]) -> Sequence[int]:
        totals: dict[str, int] = {}
        for bot_id, delta in items:
            totals[bot_id] = totals.get(bot_id, 0) + delta
        left = await asyncio.gather(
            *(self._usage.add_media_usage(bot_id, delta) for bot_id, delta in totals.items())
        )
        after = dict(zip(totals, left, strict=True))
        return [after[bot_id] for bot_id, _ in items]

    async def close(self) -> None:
        """Waits for the releases already handed over."""
        await self._batcher.close()
