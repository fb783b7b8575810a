"""Which media byte store to open, from the environment (README, "Storage")."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.common.batch_thread import Offload
from services.common.errors import InvalidInputError
from services.common.media_store._filesystem import FilesystemMediaStore
from services.common.media_store._gridfs import GridFSMediaStore
from services.common.media_store._interface import MediaStore
from services.common.store import StoreConfig
from services.common.store.mongo import MongoStore

Kind = Literal["filesystem", "gridfs"]
DEFAULT_STAGING_DIR = Path("./var/staging")


@dataclass(frozen=True, slots=True)
class MediaStoreConfig:
    kind: Kind = "filesystem"
    # The filesystem backend's directory (MEDIA_STAGING_DIR).
    staging_dir: Path = DEFAULT_STAGING_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MediaStoreConfig:
        """MEDIA_STORE=filesystem|gridfs (default filesystem); `gridfs` needs the MongoDB
        store (MONGODB_URI), whose database holds the `media` bucket."""
        env = os.environ if env is None else env
        kind = env.get("MEDIA_STORE", "").strip().lower() or "filesystem"
        if kind not in ("filesystem", "gridfs"):
            raise InvalidInputError(f"MEDIA_STORE must be 'filesystem' or 'gridfs', got {kind!r}")
        if kind == "gridfs" and StoreConfig.from_env(env).backend != "mongodb":
            raise InvalidInputError(
                "MEDIA_STORE=gridfs keeps media bytes in MongoDB: set MONGODB_URI (the store's"
                " database holds the `media` bucket), or use MEDIA_STORE=filesystem"
            )
        staging = Path(env.get("MEDIA_STAGING_DIR", "").strip() or DEFAULT_STAGING_DIR)
        return cls(kind=kind, staging_dir=staging)  # type: ignore[arg-type]  # checked above


def open_media_store(
    config: MediaStoreConfig, store: object, short_calls: Offload = asyncio.to_thread
) -> MediaStore:
    """The configured backend; GridFS shares the MongoDB store's client and database.
    `short_calls`: where the filesystem backend runs its deletes."""
    if config.kind == "gridfs":
        if not isinstance(store, MongoStore):
            raise InvalidInputError("MEDIA_STORE=gridfs needs the MongoDB store (MONGODB_URI)")
        return GridFSMediaStore(store.media_database)
    return FilesystemMediaStore(config.staging_dir, short_calls)
