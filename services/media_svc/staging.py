"""Staged media as media_svc sees it: objects in the platform's MediaStore (a directory,
or GridFS: no shared filesystem), read into this replica's own scratch directory before a
processor runs, and deleted after delivery with the bot's staged bytes released.

A job's object is named by its validated UUID4 media_processing_id only; the MediaStore
refuses anything else, and the filesystem backend refuses (and removes) a symlink in
place of an object, so no job document can make media_svc read or delete another file.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from services.common.batch_thread import Offload
from services.common.media_store import MediaEntry, MediaStore, StagedMedia, check_media_id
from services.common.store import MediaJob

log = logging.getLogger(__name__)

# `<media_processing_id>.<8 hex>`: a local copy (`local_copy`).
_COPY_NAME = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.[0-9a-f]{8}"
)


@dataclass(frozen=True, slots=True)
class LocalCopy:
    """A staged object copied into this replica's scratch directory for a processor."""

    path: Path
    size: int


class MediaStaging:
    def __init__(
        self, staged: StagedMedia, scratch_dir: Path, short_calls: Offload = asyncio.to_thread
    ) -> None:
        """`short_calls` runs the removal of copies (server: the replica's BatchThread)."""
        self._staged = staged
        self._short = short_calls
        # Copy names only need to be unique within this replica's scratch directory (its
        # leftovers are removed below): a counter, not a random read per job.
        self._copies = itertools.count(secrets.randbits(32))
        scratch_dir.mkdir(parents=True, exist_ok=True)
        scratch_dir.chmod(0o700)
        self._scratch = scratch_dir.resolve()
        # Per replica: copies a crashed run of this replica left are nobody's. Only names
        # this class makes are removed; whatever else an operator keeps there stays.
        for leftover in self._scratch.iterdir():
            if _COPY_NAME.fullmatch(leftover.name) and leftover.is_file():
                leftover.unlink(missing_ok=True)

    @property
    def media(self) -> MediaStore:
        return self._staged.media

    @property
    def scratch_dir(self) -> Path:
        return self._scratch

    async def exists(self, media_processing_id: str) -> bool:
        return await self._staged.media.size(media_processing_id) is not None

    async def local_copy(self, media_processing_id: str, max_bytes: int) -> LocalCopy:
        """The object copied, chunk by chunk, into a new file of the scratch directory;
        the caller removes it with `release_copy`. Raises MediaMissingError,
        MediaRefusedError or MediaTooLargeError (no copy left behind)."""
        name = f"{check_media_id(media_processing_id)}.{next(self._copies) % 2**32:08x}"
        copy = self._scratch / name
        try:
            size = await self._staged.media.copy_to(media_processing_id, copy, max_bytes)
        except BaseException:
            await self._short(copy.unlink, missing_ok=True)
            raise
        return LocalCopy(copy, size)

    async def release_copy(self, copy: LocalCopy) -> None:
        if copy.path.parent == self._scratch:
            await self._short(copy.path.unlink, missing_ok=True)

    async def delete(self, job: MediaJob) -> bool:
        """Deletes the job's object and releases its bytes from its bot's quota; False
        when it was already gone (nothing released twice)."""
        return await self.delete_of(job.bot_id, job.media_processing_id)

    async def delete_of(self, bot_id: str, media_processing_id: str) -> bool:
        deleted = await self._staged.discard(bot_id, media_processing_id)
        if deleted:
            log.debug("deleted staged media %s of bot %s", media_processing_id, bot_id)
        return deleted

    async def entries(self) -> list[MediaEntry]:
        return await self._staged.media.entries()

    async def remove_entry(self, entry: MediaEntry) -> bool:
        return await self._staged.discard_entry(entry)
