"""The staging directory: media bytes written by Node as `<media_processing_id>`.

A path is only ever built from a validated UUID4 and checked to resolve inside the
directory, so no job document or request can make media_svc touch another file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import InvalidInputError
from services.common.validation import is_uuid4

log = logging.getLogger(__name__)

# Node writes `<uuid4>.part` and renames it when the download is complete.
PARTIAL_SUFFIX = ".part"


@dataclass(frozen=True, slots=True)
class StagedEntry:
    """A file found in the staging directory."""

    path: Path
    # The job id the file belongs to, or None for partial or foreign files.
    media_processing_id: str | None
    partial: bool
    age_seconds: float


class StagingDirectory:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()

    @property
    def root(self) -> Path:
        return self._root

    def path_for(self, media_processing_id: str) -> Path:
        """The staged file of a job; InvalidInputError for anything but a UUID4."""
        if not is_uuid4(media_processing_id):
            raise InvalidInputError(
                f"media_processing_id must be a lower-case UUID4, got {media_processing_id!r}"
            )
        # The root is resolved and a UUID4 has no separators, so the path is inside it.
        # The last component is deliberately not resolved: a symlink planted there must
        # be seen (lstat) and refused, never followed.
        path = self._root / media_processing_id
        if path.parent != self._root:
            raise InvalidInputError(f"staged path {path} escapes the staging directory")
        return path

    def exists(self, media_processing_id: str) -> bool:
        path = self.path_for(media_processing_id)
        return path.is_file() and not path.is_symlink()

    def delete(self, media_processing_id: str) -> bool:
        """Removes the job's staged file; False when it was already gone."""
        path = self.path_for(media_processing_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        log.debug("deleted staged file %s", path)
        return True

    def entries(self, now: float | None = None) -> Iterator[StagedEntry]:
        """Regular files directly in the directory, with their age (by mtime)."""
        now = time.time() if now is None else now
        for path in self._root.iterdir():
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            if not path.is_file() or path.is_symlink():
                continue
            name = path.name
            partial = name.endswith(PARTIAL_SUFFIX)
            stem = name[: -len(PARTIAL_SUFFIX)] if partial else name
            yield StagedEntry(
                path=path,
                media_processing_id=stem if is_uuid4(stem) and not partial else None,
                partial=partial,
                age_seconds=max(0.0, now - stat.st_mtime),
            )

    def remove_entry(self, entry: StagedEntry) -> bool:
        """Deletes a file found by `entries` (it is inside the root by construction)."""
        if entry.path.parent != self._root:
            raise InvalidInputError(f"{entry.path} is not in the staging directory")
        try:
            entry.path.unlink()
        except FileNotFoundError:
            return False
        return True
