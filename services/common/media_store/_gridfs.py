"""Media bytes in GridFS's layout (`media.files`, `media.chunks`: the `media` bucket) on
the MongoDB the store uses, so `mongofiles` or PyMongo's `AsyncGridFSBucket` read them.

Written chunk by chunk here rather than through `AsyncGridFSBucket.open_upload_stream`:
PyMongo 4.20's upload stream buffers chunks client-side up to 48 MB
(`gridfs.asynchronous.grid_file._UPLOAD_BUFFER_SIZE`) before one `insert_many`, which
would hold a whole photo or voice note in the gateway's memory. Here at most one chunk is
held per upload and read back (`find` with a small batch size) per download.

The `files` document is inserted after the last chunk, so an object appears whole or not
at all; a failed upload deletes its chunks, and one a crash cut off leaves chunks without
a `files` document, which `entries` reports as partial (aged by their ObjectId).

Every upload gets a fresh ObjectId and the job id as its file name. A retried upload of
the same id deletes the objects of that name with smaller ids once it is complete, and
itself when one with a larger id completed first, so of racing uploads the one with the
largest id stays and each other object's bytes are counted as replaced by exactly one
writer (a `find_one_and_delete` takes each)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import Binary, ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from services.common.errors import InvalidInputError
from services.common.media_store._interface import (
    CHUNK_BYTES,
    MediaEntry,
    MediaMissingError,
    MediaTooLargeError,
    PutResult,
    check_media_id,
)

BUCKET = "media"
FILES_COLLECTION = f"{BUCKET}.files"
CHUNKS_COLLECTION = f"{BUCKET}.chunks"
_NEWEST_FIRST = [("_id", -1)]


class GridFSMediaStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._files = database[FILES_COLLECTION]
        self._chunks = database[CHUNKS_COLLECTION]

    @property
    def kind(self) -> str:
        return "gridfs"

    async def put(
        self,
        media_processing_id: str,
        chunks: AsyncIterable[bytes],
        max_bytes: int,
        bot_id: str = "",
    ) -> PutResult:
        check_media_id(media_processing_id)
        files_id = ObjectId()
        size = 0
        number = 0
        pending = bytearray()

        async def flush(data: bytes) -> None:
            nonlocal number
            await self._chunks.insert_one({"files_id": files_id, "n": number, "data": Binary(data)})
            number += 1

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLargeError(f"media larger than the {max_bytes} bytes allowed")
                pending += chunk
                while len(pending) >= CHUNK_BYTES:
                    await flush(bytes(pending[:CHUNK_BYTES]))
                    del pending[:CHUNK_BYTES]
            if pending:
                await flush(bytes(pending))
            await self._files.insert_one(
                {
                    "_id": files_id,
                    "length": size,
                    "chunkSize": CHUNK_BYTES,
                    "uploadDate": datetime.now(UTC),
                    "filename": media_processing_id,
                    "metadata": {"bot_id": bot_id},
                }
            )
        except BaseException:
            # Shielded: a cancelled upload (the client went away) still cleans up.
            await asyncio.shield(self._chunks.delete_many({"files_id": files_id}))
            raise
        same = {"filename": media_processing_id}
        replaced = await self._delete_where({**same, "_id": {"$lt": files_id}}) or 0
        # A racing upload of this id that started later (a larger id) but completed
        # first did not see this one: this one is superseded and goes, its bytes counted
        # as replaced. (Either that upload's delete sees this document, or this check
        # sees that one: each inserts before it looks.)
        if await self._files.find_one({**same, "_id": {"$gt": files_id}}, {"_id": 1}):
            replaced += await self._delete_where({"_id": files_id}) or 0
        return PutResult(size, replaced)

    async def _newest(self, media_processing_id: str) -> Mapping[str, Any] | None:
        return await self._files.find_one(
            {"filename": check_media_id(media_processing_id)}, sort=_NEWEST_FIRST
        )

    async def copy_to(self, media_processing_id: str, destination: Path, max_bytes: int) -> int:
        doc = await self._newest(media_processing_id)
        if doc is None:
            raise MediaMissingError(f"no staged media {media_processing_id}")
        if doc["length"] > max_bytes:
            raise MediaTooLargeError(f"{doc['length']} bytes > limit {max_bytes}", doc["length"])
        size = 0
        expected = 0
        handle = await asyncio.to_thread(destination.open, "xb")
        try:
            cursor = self._chunks.find({"files_id": doc["_id"]}, sort=[("n", 1)], batch_size=4)
            async for chunk in cursor:
                if chunk["n"] != expected:
                    break
                expected += 1
                data = bytes(chunk["data"])
                size += len(data)
                await asyncio.to_thread(handle.write, data)
        finally:
            await asyncio.to_thread(handle.close)
        if size != doc["length"]:
            # Replaced or deleted while being read: as if it had not been there.
            await asyncio.to_thread(destination.unlink, missing_ok=True)
            raise MediaMissingError(f"staged media {media_processing_id} vanished mid-read")
        return size

    async def size(self, media_processing_id: str) -> int | None:
        doc = await self._newest(media_processing_id)
        return None if doc is None else int(doc["length"])

    async def delete(self, media_processing_id: str) -> int | None:
        return await self._delete_where({"filename": check_media_id(media_processing_id)})

    async def _delete_where(self, query: Mapping[str, Any]) -> int | None:
        """Deletes every object matching `query`; the bytes this call took, None if none."""
        total: int | None = None
        while (doc := await self._files.find_one_and_delete(query)) is not None:
            await self._chunks.delete_many({"files_id": doc["_id"]})
            total = (total or 0) + int(doc["length"])
        return total

    async def entries(self) -> list[MediaEntry]:
        now = time.time()
        found = []
        complete: set[Any] = set()
        async for doc in self._files.find({}, {"filename": 1, "length": 1, "metadata": 1}):
            complete.add(doc["_id"])
            key = doc["_id"]
            found.append(
                MediaEntry(
                    key=str(key),
                    media_processing_id=str(doc.get("filename") or "") or None,
                    partial=False,
                    age_seconds=_age(key, now),
                    size=int(doc.get("length", 0)),
                    bot_id=(doc.get("metadata") or {}).get("bot_id") or None,
                )
            )
        for files_id in await self._chunks.distinct("files_id"):
            # A complete object that appeared after the first query is no orphan either.
            if files_id in complete or await self._files.find_one({"_id": files_id}, {"_id": 1}):
                continue
            found.append(
                MediaEntry(
                    key=str(files_id),
                    media_processing_id=None,
                    partial=True,
                    age_seconds=_age(files_id, now),
                    size=0,
                )
            )
        return found

    async def remove_entry(self, entry: MediaEntry) -> int | None:
        if not ObjectId.is_valid(entry.key):
            raise InvalidInputError(f"{entry.key!r} is not a GridFS file id")
        files_id = ObjectId(entry.key)
        if not entry.partial:
            return await self._delete_where({"_id": files_id})
        if await self._files.find_one({"_id": files_id}, {"_id": 1}):
            return None  # completed since it was listed: an object now, not a partial
        deleted = await self._chunks.delete_many({"files_id": files_id})
        return 0 if deleted.deleted_count else None

    async def close(self) -> None:
        return None


def _age(files_id: Any, now: float) -> float:
    if isinstance(files_id, ObjectId):
        return max(0.0, now - files_id.generation_time.timestamp())
    return 0.0
