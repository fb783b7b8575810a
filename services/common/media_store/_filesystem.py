"""Media bytes as files in one directory (one machine, or an operator's RWX volume): the
rules media_svc and Node have always followed there. An object is `<root>/<uuid4>`; a
write goes to a uniquely named `<uuid4>.<random>.part` first, is fsynced and hard-linked
into place, so a reader never sees a partial object. Symlinks are never followed: found in
place of an object they are removed and refused."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import stat
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from services.common.batch_thread import Offload
from services.common.errors import InvalidInputError
from services.common.media_store._interface import (
    CHUNK_BYTES,
    MediaEntry,
    MediaMissingError,
    MediaRefusedError,
    MediaTooLargeError,
    PutResult,
    check_media_id,
)
from services.common.validation import is_uuid4

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"
# Objects up to this size are copied on the caller's short-call thread (copy_to).
SHORT_COPY_BYTES = 1024 * 1024
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Why a hard link may be impossible: another filesystem, or one without links.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def _fsync_directory(path: Path) -> None:
    # The rename is durable only once the directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(source: Path, destination: Path, info: os.stat_result) -> int | None:
    """The object hard-linked as `destination` (an object is never written in place: a
    rewrite stores a new file, so the link keeps the bytes as they were, like a copy);
    its size, or None when it cannot be linked there (then it is copied)."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except FileNotFoundError:
        raise MediaMissingError(f"no staged media {source.name}") from None
    except OSError as exc:
        if exc.errno in _NO_LINK:
            return None
        raise
    linked = destination.lstat()
    if linked.st_ino != info.st_ino or linked.st_dev != info.st_dev:
        # Replaced between the check and the link (rewritten, or a symlink planted): not
        # what was checked, so it is copied instead, with the copy's own checks.
        destination.unlink(missing_ok=True)
        return None
    return linked.st_size


def _flush(handle: BinaryIO) -> None:
    # Durable before the caller is told: the frame naming the object follows at once.
    handle.flush()
    os.fsync(handle.fileno())


class FilesystemMediaStore:
    def __init__(self, root: Path, short_calls: Offload = asyncio.to_thread) -> None:
        """`short_calls` runs the deletes (rename, stat, unlink): media_svc passes its
        BatchThread, which hands many of them over at once."""
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._short = short_calls

    @property
    def kind(self) -> str:
        return "filesystem"

    @property
    def root(self) -> Path:
        return self._root

    def path_for(self, media_processing_id: str) -> Path:
        # The root is resolved and a UUID4 has no separators, so the path is inside it.
        # The last component is deliberately not resolved: a planted symlink must be
        # seen (lstat) and refused, never followed.
        return self._root / check_media_id(media_processing_id)

    def _scratch_name(self, media_processing_id: str) -> Path:
        return self._root / f"{media_processing_id}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"

    async def put(
        self,
        media_processing_id: str,
        chunks: AsyncIterable[bytes],
        max_bytes: int,
        bot_id: str = "",
    ) -> PutResult:
        final = self.path_for(media_processing_id)
        part = self._scratch_name(media_processing_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        handle: BinaryIO = await asyncio.to_thread(
            lambda: os.fdopen(os.open(part, flags, 0o600), "wb")
        )
        size = 0
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLargeError(f"media larger than the {max_bytes} bytes allowed")
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush, handle)
            finally:
                await asyncio.to_thread(handle.close)
            replaced = await asyncio.to_thread(self._replace, part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        log.debug("stored %s (%d bytes)", final, size)
        return PutResult(size, replaced)

    def _replace(self, part: Path, final: Path) -> int:
        """Puts `part` in place of `final`; the bytes of every object it displaced.

        A hard link never overwrites: when `final` exists it is first renamed away
        (`_take`), so each displaced object's bytes are counted by exactly one writer even
        when writes of one id race (os.replace would silently drop a racing writer's
        object, counted by nobody)."""
        replaced = 0
        while True:
            try:
                os.link(part, final)
            except FileExistsError:
                replaced += self._take(final) or 0
                continue
            except OSError:
                # No hard links here (some network filesystems): replace instead; only
                # racing writes of one id can then miscount.
                replaced += self._take(final) or 0
                os.replace(part, final)
                break
            part.unlink()
            break
        _fsync_directory(self._root)
        return replaced

    def _take(self, path: Path) -> int | None:
        """Renames `path` away and deletes it; its size (0 for a non-file) when this call
        took it, None when it was not there."""
        tomb = self._scratch_name(path.name)
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return None
        info = tomb.lstat()
        tomb.unlink(missing_ok=True)
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    async def copy_to(self, media_processing_id: str, destination: Path, max_bytes: int) -> int:
        source = self.path_for(media_processing_id)
        # A link, or a small object's copy, is made among the short calls; a larger copy
        # would hold them back, so it gets an executor thread of its own.
        size = await self._short(self._copy, source, destination, max_bytes, SHORT_COPY_BYTES)
        if size is None:
            size = await asyncio.to_thread(self._copy, source, destination, max_bytes)
        assert size is not None  # no size limit: never declined
        return size

    def _copy(
        self, source: Path, destination: Path, max_bytes: int, up_to: int | None = None
    ) -> int | None:
        """The bytes linked or copied; None (nothing done) when a copy is needed and the
        object is larger than `up_to`."""
        try:
            info = source.lstat()
        except FileNotFoundError:
            raise MediaMissingError(f"no staged media {source.name}") from None
        if not stat.S_ISREG(info.st_mode):
            if not stat.S_ISDIR(info.st_mode):
                # Removed so nothing else follows it either.
                source.unlink(missing_ok=True)
            raise MediaRefusedError(f"staged entry {source.name} is not a regular file")
        if info.st_size > max_bytes:
            raise MediaTooLargeError(f"{info.st_size} bytes > limit {max_bytes}", info.st_size)
        linked = _link(source, destination, info)
        if linked is not None:
            return linked
        if up_to is not None and info.st_size > up_to:
            return None
        try:
            fd = os.open(source, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            raise MediaMissingError(f"no staged media {source.name}") from None
        size = 0
        with os.fdopen(fd, "rb") as reader, destination.open("xb") as writer:
            while chunk := reader.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:  # grew while being read
                    raise MediaTooLargeError(f"more than {max_bytes} bytes")
                writer.write(chunk)
        return size

    async def size(self, media_processing_id: str) -> int | None:
        path = self.path_for(media_processing_id)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    async def delete(self, media_processing_id: str) -> int | None:
        return await self._short(self._take, self.path_for(media_processing_id))

    async def entries(self) -> list[MediaEntry]:
        return await asyncio.to_thread(self._entries, time.time())

    def _entries(self, now: float) -> list[MediaEntry]:
        found = []
        for path in self._root.iterdir():
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            name = path.name
            partial = name.endswith(PARTIAL_SUFFIX)
            found.append(
                MediaEntry(
                    key=name,
                    media_processing_id=name if not partial and is_uuid4(name) else None,
                    partial=partial,
                    age_seconds=max(0.0, now - info.st_mtime),
                    size=info.st_size,
                )
            )
        return found

    async def remove_entry(self, entry: MediaEntry) -> int | None:
        path = self._root / entry.key
        if path.parent != self._root or entry.key in ("", ".", ".."):
            raise InvalidInputError(f"{entry.key!r} is not an entry of the media directory")
        return await self._short(self._take, path)

    async def close(self) -> None:
        return None
