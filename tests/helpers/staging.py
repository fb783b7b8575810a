"""media_svc's staging over a real directory (the filesystem MediaStore) with the test's
view of that directory: a test writes a job's bytes where Node's upload would land."""

from __future__ import annotations

from pathlib import Path

from services.common.media_store import FilesystemMediaStore, MediaUsageCounter, StagedMedia
from services.media_svc.staging import MediaStaging


class StagingDirectory(MediaStaging):
    def __init__(self, root: Path, usage: MediaUsageCounter) -> None:
        self.files = FilesystemMediaStore(root)
        super().__init__(StagedMedia(self.files, usage), root.parent / f"{root.name}-scratch")

    @property
    def root(self) -> Path:
        return self.files.root

    def path_for(self, media_processing_id: str) -> Path:
        return self.files.path_for(media_processing_id)
