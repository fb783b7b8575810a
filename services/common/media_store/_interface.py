"""What every media byte store offers (filesystem, GridFS): objects named by a job's
`media_processing_id` (a lower-case UUID4, checked before any use), written and read in
chunks so no object is ever whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.errors import InvalidInputError, NotFoundError
from services.common.validation import is_uuid4

# Chunks are read and written in this size (GridFS's own default chunk size).
CHUNK_BYTES = 255 * 1024


class MediaTooLargeError(InvalidInputError):
    """The object is (or would become) larger than the size allowed."""

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        # The object's size, when known (a stored object read under a lower limit).
        self.size = size


class MediaMissingError(NotFoundError):
    """No object by that id (never written, deleted, or replaced while being read)."""


class MediaRefusedError(InvalidInputError):
    """The entry by that id is not a regular object (a symlink planted in the directory)."""


def check_media_id(media_processing_id: str) -> str:
    if not is_uuid4(media_processing_id):
        raise InvalidInputError(
            f"media_processing_id must be a lower-case UUID4, got {media_processing_id!r}"
        )
    return media_processing_id


@dataclass(frozen=True, slots=True)
class PutResult:
    size: int
    # Bytes of the object this write replaced (a retried upload of the same id), 0 if none:
    # the quota counter moves by `size - replaced_bytes`.
    replaced_bytes: int


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """One object, or one partial write a crash left, found by `entries`."""

    # Backend-specific handle for `remove_entry` (a file name, a GridFS file id).
    key: str
    # The job id the object belongs to; None for partial or foreign entries.
    media_processing_id: str | None
    partial: bool
    age_seconds: float
    size: int
    # The bot the bytes are accounted to, where the backend records it (GridFS).
    bot_id: str | None = None


class MediaStore(Protocol):
    """Media bytes by job id. A complete object appears atomically: a reader sees the
    whole object or none (partial writes are invisible and removed on failure)."""

    @property
    def kind(self) -> str:
        """ "filesystem" or "gridfs" (logs, readiness)."""

    async def put(
        self,
        media_processing_id: str,
        chunks: AsyncIterable[bytes],
        max_bytes: int,
        bot_id: str = "",
    ) -> PutResult:
        """Writes the object from `chunks`; an existing object of that id is replaced.
        MediaTooLargeError past `max_bytes`; on any failure nothing is left behind."""

    async def copy_to(self, media_processing_id: str, destination: Path, max_bytes: int) -> int:
        """Copies the object into the new file `destination`, chunk by chunk, or hard-links
        it there (filesystem backend, same filesystem); its size. MediaMissingError,
        MediaRefusedError or MediaTooLargeError (nothing copied)."""

    async def size(self, media_processing_id: str) -> int | None:
        """The object's size; None when there is none."""

    async def delete(self, media_processing_id: str) -> int | None:
        """Removes the object; its size when this call removed it, None when there was
        none (of two concurrent deletes exactly one gets the size)."""

    async def entries(self) -> list[MediaEntry]:
        """Every object and partial write, with its age (the orphan cleanup)."""

    async def remove_entry(self, entry: MediaEntry) -> int | None:
        """Removes an entry found by `entries`; its size when this call removed it."""

    async def close(self) -> None: ...
