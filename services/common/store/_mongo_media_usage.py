"""The per-bot staged-byte counter on MongoDB: `media_usage` ({_id: bot_id,
staged_bytes}); and the database holding the GridFS `media` bucket
(services/common/media_store), whose collections are named here for db_roles."""

from __future__ import annotations

from typing import Any

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.store._media_usage import check_usage_change
from services.common.store._mongo_base import Doc, MongoBase


class MongoMediaUsage(MongoBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        database = self._configs.database
        self._media_usage: AsyncCollection[Doc] = database["media_usage"]
        # Written through GridFS (media_store/_gridfs.py); attributes so db_roles' test
        # sees them.
        self._media_files: AsyncCollection[Doc] = database["media.files"]
        self._media_chunks: AsyncCollection[Doc] = database["media.chunks"]

    async def _create_indexes(self) -> None:
        await super()._create_indexes()
        # GridFS's own indexes (what drivers create), so GridFS tools find them.
        await self._indexes(
            self._media_chunks,
            [IndexModel([("files_id", 1), ("n", 1)], unique=True, name="files_id_1_n_1")],
        )
        await self._indexes(
            self._media_files,
            [IndexModel([("filename", 1), ("uploadDate", 1)], name="filename_1_uploadDate_1")],
        )

    @property
    def media_database(self) -> AsyncDatabase[Doc]:
        """The database of the GridFS `media` bucket (MEDIA_STORE=gridfs)."""
        return self._configs.database

    async def add_media_usage(self, bot_id: str, delta: int) -> int:
        check_usage_change(bot_id, delta)
        # One pipeline update: the sum is clamped at 0 in the same atomic write, so bytes
        # that were never counted (a crash between a write and its accounting) cannot
        # drive the counter below zero when they are deleted.
        doc = await self._media_usage.find_one_and_update(
            {"_id": bot_id},
            [
                {
                    "$set": {
                        "staged_bytes": {
                            "$max": [0, {"$add": [{"$ifNull": ["$staged_bytes", 0]}, delta]}]
                        }
                    }
                }
            ],
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            # SecantusDB answers some of several racing upserts of a new bot with no
            # document although each write applied (measured: 8 at once, the counter ends
            # at the sum, 1-3 answers empty): the write is not repeated, the value re-read.
            return await self.media_usage(bot_id)
        return int(doc["staged_bytes"])

    async def media_usage(self, bot_id: str) -> int:
        doc = await self._media_usage.find_one({"_id": bot_id})
        return 0 if doc is None else int(doc.get("staged_bytes", 0))
