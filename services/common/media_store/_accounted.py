"""Media bytes with their bot's staged-byte counter (the quota) kept exact.

The counter moves only by what an operation really did: a write adds its size minus the
bytes of the object it replaced (a retried upload after a crash counts once), a delete
subtracts the size only when this call removed the object (a second delete finds none,
so the counter never double-decrements). Check-then-write: the quota is compared with
the counter before a write starts (`used < quota`, as the old directory walk did), and
the real size is added once the object is durable; concurrent uploads of one bot can
overshoot the quota by at most what is in flight, never the counter's exactness."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Protocol

from services.common.media_store._interface import MediaEntry, MediaStore
from services.common.store import check_usage_change

log = logging.getLogger(__name__)


class MediaUsageCounter(Protocol):
    """The store's per-bot staged-byte counter (`MediaUsageStore`)."""

    async def add_media_usage(self, bot_id: str, delta: int) -> int: ...
    async def media_usage(self, bot_id: str) -> int: ...


class StagedMedia:
    def __init__(self, media: MediaStore, usage: MediaUsageCounter) -> None:
        self._media = media
        self._usage = usage

    @property
    def media(self) -> MediaStore:
        return self._media

    async def used_bytes(self, bot_id: str) -> int:
        return await self._usage.media_usage(bot_id)

    async def stage(
        self, bot_id: str, media_processing_id: str, chunks: AsyncIterable[bytes], max_bytes: int
    ) -> int:
        """Writes the object and accounts it to the bot; returns its size."""
        # Refused before a byte is stored: an object the counter cannot take would be
        # stored uncounted.
        check_usage_change(bot_id, 0)
        result = await self._media.put(media_processing_id, chunks, max_bytes, bot_id=bot_id)
        delta = result.size - result.replaced_bytes
        if delta:
            await self._usage.add_media_usage(bot_id, delta)
        return result.size

    async def discard(self, bot_id: str, media_processing_id: str) -> bool:
        """Deletes the object and releases its bytes; False when it was already gone."""
        removed = await self._media.delete(media_processing_id)
        if removed is None:
            return False
        if removed:
            await self._usage.add_media_usage(bot_id, -removed)
        return True

    async def discard_entry(self, entry: MediaEntry) -> bool:
        """Removes an entry the orphan cleanup found; its bytes are released when the
        backend knows whose they were (GridFS records the bot with the object)."""
        removed = await self._media.remove_entry(entry)
        if removed is None:
            return False
        if removed and entry.bot_id and not entry.partial:
            await self._usage.add_media_usage(entry.bot_id, -removed)
        return True
