"""Media bytes without a shared filesystem: one `MediaStore` interface, a filesystem
backend (one machine, or an operator's RWX volume) and a GridFS backend on the store's
MongoDB; `StagedMedia` keeps each bot's staged-byte counter in the store exact."""

from services.common.media_store._accounted import MediaUsageCounter, StagedMedia
from services.common.media_store._config import MediaStoreConfig, open_media_store
from services.common.media_store._filesystem import PARTIAL_SUFFIX, FilesystemMediaStore
from services.common.media_store._gridfs import GridFSMediaStore
from services.common.media_store._interface import (
    CHUNK_BYTES,
    MediaEntry,
    MediaMissingError,
    MediaRefusedError,
    MediaStore,
    MediaTooLargeError,
    PutResult,
    check_media_id,
)

__all__ = [
    "CHUNK_BYTES",
    "PARTIAL_SUFFIX",
    "FilesystemMediaStore",
    "GridFSMediaStore",
    "MediaEntry",
    "MediaMissingError",
    "MediaRefusedError",
    "MediaStore",
    "MediaStoreConfig",
    "MediaTooLargeError",
    "MediaUsageCounter",
    "PutResult",
    "StagedMedia",
    "check_media_id",
    "open_media_store",
]
