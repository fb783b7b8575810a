"""The production adapter: MongoDB through PyMongo's native asyncio client.

Claims are one `find_one_and_update` (sorted, ReturnDocument.AFTER) on the claim index.
Moves between the three job collections copy first (idempotent upsert on
`_id = media_processing_id`) and delete the source only if it is unchanged (`version`),
so a crash mid-move can leave a duplicate that the next move settles, never a loss; a
concurrent writer that changed the source makes the move copy again. This works on a
standalone server as well as on a replica set. Change streams (replica set or sharded
cluster) wake `wait_for_jobs`; without them it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    IndexModel,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from services.common.errors import InvalidInputError, UnavailableError
from services.common.routing import DEFINITIONS_DOCUMENT_ID
from services.common.store._notify import Notifier
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    JOB_FIELDS,
    MESSAGE_FIELDS,
    MESSAGE_INPUT_FIELDS,
    NEW_JOB_FIELDS,
    AppendResult,
    BotConfig,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    PoolDepth,
    StoredMessage,
    check_consumer,
    check_page,
    listed_bots,
    to_millis,
    truncate_to_millis,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
POLL_INTERVAL_SECONDS = 0.5
_DUPLICATE_KEY = 11000
_LIVE = (JobCollection.ACTIVE, JobCollection.HOLDING)
_MAX_MOVE_RETRIES = 50
# Documents of `bot_configurations` that are not bots.
_RESERVED_IDS = frozenset({DEFINITIONS_DOCUMENT_ID, ACTIVE_BOTS_DOCUMENT_ID})


def _now() -> datetime:
    return truncate_to_millis(datetime.now(UTC))


def _seconds(value: float, what: str) -> timedelta:
    if not value > 0:
        raise InvalidInputError(f"{what} must be > 0 seconds, got {value!r}")
    return timedelta(seconds=value)


def _job(doc: Mapping[str, Any]) -> MediaJob:
    values: dict[str, Any] = {name: doc.get(name) for name in JOB_FIELDS}
    values["media_processing_id"] = doc["_id"]
    values["status"] = JobStatus(doc["status"])
    # A document written before `fence` existed (until the next open backfills it).
    values["fence"] = doc.get("fence", doc.get("attempts", 0))
    return MediaJob(**values)


def _message(doc: Mapping[str, Any]) -> StoredMessage:
    values: dict[str, Any] = {name: doc.get(name) for name in MESSAGE_FIELDS}
    return StoredMessage(**values)


def _only_duplicates(error: BulkWriteError) -> bool:
    return all(e.get("code") == _DUPLICATE_KEY for e in error.details.get("writeErrors", []))


class MongoStore:
    """The `Store` on a MongoDB database (replica set recommended: change streams)."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str, change_streams: bool) -> None:
        self._client = client
        db = client[database]
        self._configs: AsyncCollection[Doc] = db["bot_configurations"]
        self._queues: AsyncCollection[Doc] = db["queues"]
        self._leases: AsyncCollection[Doc] = db["leases"]
        # One counter document per bot ({_id: bot_id, last}): the delivery sequences.
        self._sequences: AsyncCollection[Doc] = db["queue_sequences"]
        self._cursors: AsyncCollection[Doc] = db["delivery_cursors"]
        self._jobs: dict[JobCollection, AsyncCollection[Doc]] = {
            c: db[c.collection_name] for c in JobCollection
        }
        self._change_streams = change_streams
        self._notifier: Notifier | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, uri: str, database: str) -> MongoStore:
        client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, tz_aware=True, tzinfo=UTC)
        try:
            hello = await client.admin.command("hello")
            # Change streams need a replica set or a mongos.
            change_streams = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            store = cls(client, database, change_streams)
            await store._create_indexes()
            await store._backfill()
        except PyMongoError as exc:
            await client.close()
            raise UnavailableError(
                f"cannot use MongoDB at MONGODB_URI ({exc}); check the URI, credentials and that"
                " the server is reachable, or unset MONGODB_URI to use the embedded SQLite store"
            ) from exc
        return store

    async def _create_indexes(self) -> None:
        await self._queues.create_indexes(
            [
                IndexModel(
                    [("bot_id", 1), ("provider_name", 1), ("correspondent_id", 1), ("id", 1)],
                    unique=True,
                    name="message_identity",
                ),
                IndexModel([("bot_id", 1), ("provider_message_id", 1)], name="provider_message_id"),
                # Partial: documents written before sequences existed lack the field until
                # _backfill numbers them.
                IndexModel(
                    [("bot_id", 1), ("sequence", 1)],
                    unique=True,
                    name="delivery_sequence",
                    partialFilterExpression={"sequence": {"$exists": True}},
                ),
            ]
        )
        await self._cursors.create_index(
            [("consumer", 1), ("bot_id", 1)], unique=True, name="consumer_bot"
        )
        for collection in _LIVE:
            await self._jobs[collection].create_indexes(
                [
                    # Equality, sort, range: the claim walks (status, pool) in created order
                    # and checks available_at from the index.
                    IndexModel(
                        [
                            ("status", 1),
                            ("pool", 1),
                            ("created_at", 1),
                            ("created_ns", 1),
                            ("available_at", 1),
                        ],
                        name="claim",
                    ),
                    IndexModel([("bot_id", 1), ("created_at", 1)], name="bot"),
                    IndexModel([("correspondent_id", 1)], name="correspondent"),
                    IndexModel([("lease_expires_at", 1)], name="lease_expiry"),
                    IndexModel([("created_at", 1)], name="created"),
                    IndexModel([("status", 1), ("route", 1)], name="route"),
                ]
            )
        for collection in JobCollection:
            # list_completed_jobs: equality, then the sort (created_ns orders equal times).
            await self._jobs[collection].create_index(
                [("status", 1), ("updated_at", 1), ("created_ns", 1)], name="completed"
            )
        await self._jobs[JobCollection.FAILED].create_indexes(
            [
                IndexModel([("created_at", 1)], name="created"),
                IndexModel([("error", 1)], name="error"),
                IndexModel([("failed_at", -1)], name="failed_at"),
                IndexModel([("bot_id", 1), ("failed_at", -1)], name="bot_failed_at"),
                IndexModel([("correspondent_id", 1)], name="correspondent"),
            ]
        )

    async def _backfill(self) -> None:
        """Fills fields added after the first release into existing job documents.

        Until `fence` existed the token was `attempts`; continuing from it keeps every
        token issued before the upgrade refused once the job is claimed again.
        """
        for collection in JobCollection:
            await self._jobs[collection].update_many(
                {"fence": {"$exists": False}},
                [
                    {
                        "$set": {
                            "fence": {"$ifNull": ["$attempts", 0]},
                            # A move running meanwhile sees the change and copies again.
                            "version": {"$add": [{"$ifNull": ["$version", 0]}, 1]},
                        }
                    }
                ],
            )

        await self._backfill_sequences()

    async def _backfill_sequences(self) -> None:
        """Numbers messages stored before delivery sequences existed (insertion order,
        i.e. ObjectId order) and moves every bot's counter past its highest sequence."""
        for bot_id in await self._queues.distinct("bot_id", {"sequence": {"$exists": False}}):
            top = await self.max_sequence(bot_id)
            updates = []
            async for doc in self._queues.find(
                {"bot_id": bot_id, "sequence": {"$exists": False}}, {"_id": 1}
            ).sort("_id", ASCENDING):
                top += 1
                updates.append(UpdateOne({"_id": doc["_id"]}, {"$set": {"sequence": top}}))
            for start in range(0, len(updates), 1000):
                await self._queues.bulk_write(updates[start : start + 1000], ordered=True)
        cursor = await self._queues.aggregate(
            [{"$group": {"_id": "$bot_id", "top": {"$max": "$sequence"}}}]
        )
        async for row in cursor:
            if row.get("top") is not None:
                await self._sequences.update_one(
                    {"_id": row["_id"]}, {"$max": {"last": int(row["top"])}}, upsert=True
                )

    async def __aenter__(self) -> MongoStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await self._client.close()

    def _wake(self) -> None:
        if self._notifier is not None:
            self._notifier.wake()

    # --- bot configuration ---------------------------------------------------------

    async def get_bot_config(self, bot_id: str) -> BotConfig | None:
        if bot_id in _RESERVED_IDS:
            return None
        doc = await self._configs.find_one({"_id": bot_id})
        return None if doc is None else BotConfig.from_document({**doc, "bot_id": bot_id})

    async def put_bot_config(self, config: BotConfig) -> None:
        if config.bot_id in _RESERVED_IDS:
            raise InvalidInputError(f"bot_id {config.bot_id!r} is reserved")
        doc = config.to_document()
        await self._configs.replace_one({"_id": config.bot_id}, doc, upsert=True)

    async def get_processor_definitions(self) -> dict[str, Any] | None:
        doc = await self._configs.find_one({"_id": DEFINITIONS_DOCUMENT_ID})
        if doc is None:
            return None
        return {key: value for key, value in doc.items() if key != "_id"}

    async def put_processor_definitions(self, doc: dict[str, Any]) -> None:
        body = {key: value for key, value in doc.items() if key != "_id"}
        await self._configs.replace_one({"_id": DEFINITIONS_DOCUMENT_ID}, body, upsert=True)

    async def seed_processor_definitions(self, doc: dict[str, Any]) -> bool:
        body = {key: value for key, value in doc.items() if key != "_id"}
        try:
            await self._configs.insert_one({**body, "_id": DEFINITIONS_DOCUMENT_ID})
        except DuplicateKeyError:
            return False
        return True

    # --- the registry of active bots ------------------------------------------------

    async def set_bot_active(self, bot_id: str, active: bool) -> bool:
        if not bot_id:
            raise InvalidInputError("set_bot_active needs a non-empty bot_id")
        # $addToSet / $pull change one element atomically: concurrent shards never
        # overwrite each other's entries.
        key = {"_id": ACTIVE_BOTS_DOCUMENT_ID}
        if not active:
            removed = await self._configs.update_one(
                {**key, ACTIVE_BOTS_FIELD: bot_id}, {"$pull": {ACTIVE_BOTS_FIELD: bot_id}}
            )
            return removed.modified_count > 0
        try:
            added = await self._configs.update_one(
                key, {"$addToSet": {ACTIVE_BOTS_FIELD: bot_id}}, upsert=True
            )
        except DuplicateKeyError:
            # Two first upserts raced and the other created the document: add to it.
            added = await self._configs.update_one(key, {"$addToSet": {ACTIVE_BOTS_FIELD: bot_id}})
        return added.modified_count > 0 or added.upserted_id is not None

    async def active_bots(self) -> list[str]:
        doc = await self._configs.find_one({"_id": ACTIVE_BOTS_DOCUMENT_ID})
        return [] if doc is None else listed_bots(doc.get(ACTIVE_BOTS_FIELD))

    # --- messages ------------------------------------------------------------------

    async def insert_messages(self, messages: Sequence[StoredMessage]) -> int:
        return (await self.append_messages(messages)).inserted

    async def append_messages(self, messages: Sequence[StoredMessage]) -> AppendResult:
        docs = [{name: getattr(m, name) for name in MESSAGE_INPUT_FIELDS} for m in messages]
        if not docs:
            return AppendResult([], 0)
        per_bot: dict[str, int] = {}
        for doc in docs:
            doc["originating_time"] = truncate_to_millis(doc["originating_time"])
            per_bot[doc["bot_id"]] = per_bot.get(doc["bot_id"], 0) + 1
        # A block of sequences per bot from its counter document, taken before the
        # insert (there are no multi-document transactions on a standalone server): a
        # crash in between leaves a gap, never a repeat; the unique (bot_id, sequence)
        # index refuses a second writer of the same numbers.
        next_of: dict[str, int] = {}
        for bot_id, count in per_bot.items():
            counter = await self._sequences.find_one_and_update(
                {"_id": bot_id},
                {"$inc": {"last": count}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            assert counter is not None
            next_of[bot_id] = int(counter["last"]) - count + 1
        for doc in docs:
            doc["sequence"] = next_of[doc["bot_id"]]
            next_of[doc["bot_id"]] += 1
        sequences = [int(doc["sequence"]) for doc in docs]
        failed: list[int] = []
        try:
            await self._queues.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise
            failed = sorted(e["index"] for e in exc.details.get("writeErrors", []))
        for index in failed:
            doc = docs[index]
            existing = await self._queues.find_one(
                {key: doc[key] for key in ("bot_id", "provider_name", "correspondent_id", "id")},
                {"sequence": 1},
            )
            if existing is None or existing.get("sequence") is None:
                raise UnavailableError(
                    "a delivery sequence collided with another writer's; retry the insert"
                )
            sequences[index] = int(existing["sequence"])
        return AppendResult(sequences, len(docs) - len(failed))

    async def messages_after(
        self, bot_id: str, after_sequence: int, limit: int = 500
    ) -> list[StoredMessage]:
        check_page(limit, 0)
        if limit == 0:
            return []
        cursor = (
            self._queues.find({"bot_id": bot_id, "sequence": {"$gt": after_sequence}})
            .sort("sequence", ASCENDING)
            .limit(limit)
        )
        return [_message(doc) async for doc in cursor]

    async def max_sequence(self, bot_id: str) -> int:
        doc = await self._queues.find_one(
            {"bot_id": bot_id, "sequence": {"$exists": True}},
            {"sequence": 1},
            sort=[("sequence", DESCENDING)],
        )
        return 0 if doc is None else int(doc["sequence"])

    # --- delivery cursors of named consumers ------------------------------------------

    async def delivery_cursors(self, consumer: str) -> dict[str, int]:
        cursor = self._cursors.find({"consumer": consumer}, {"bot_id": 1, "sequence": 1})
        return {doc["bot_id"]: int(doc["sequence"]) async for doc in cursor}

    async def advance_cursor(self, consumer: str, bot_id: str, sequence: int) -> bool:
        check_consumer(consumer, bot_id, sequence)
        key = {"consumer": consumer, "bot_id": bot_id}
        moved = await self._cursors.update_one(
            {**key, "sequence": {"$lt": sequence}},
            {"$set": {"sequence": sequence, "updated_at": _now()}},
        )
        if moved.modified_count:
            return True
        try:
            await self._cursors.insert_one({**key, "sequence": sequence, "updated_at": _now()})
        except DuplicateKeyError:
            return False  # already there, at or past `sequence`
        return True

    async def max_message_ids(self, bot_id: str, provider_name: str) -> dict[str, int]:
        cursor = await self._queues.aggregate(
            [
                {"$match": {"bot_id": bot_id, "provider_name": provider_name}},
                {"$group": {"_id": "$correspondent_id", "top": {"$max": "$id"}}},
            ]
        )
        return {row["_id"]: int(row["top"]) async for row in cursor}

    async def message_history(
        self, bot_id: str, provider_name: str, correspondent_id: str, limit: int = 100
    ) -> list[StoredMessage]:
        if limit < 0:
            raise InvalidInputError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        cursor = (
            self._queues.find(
                {
                    "bot_id": bot_id,
                    "provider_name": provider_name,
                    "correspondent_id": correspondent_id,
                }
            )
            .sort("id", DESCENDING)
            .limit(limit)
        )
        newest = [_message(doc) async for doc in cursor]
        return newest[::-1]

    async def recent_messages(
        self,
        bot_id: str,
        provider_name: str,
        per_correspondent: int,
        since: datetime | None = None,
    ) -> dict[str, list[StoredMessage]]:
        if per_correspondent < 0:
            raise InvalidInputError(f"per_correspondent must be >= 0, got {per_correspondent}")
        if per_correspondent == 0:
            return {}
        match: Doc = {"bot_id": bot_id, "provider_name": provider_name}
        if since is not None:
            to_millis(since, "since")
            match["originating_time"] = {"$gte": truncate_to_millis(since)}
        # $topN (MongoDB 5.2+) keeps only n documents per group in memory, however long
        # the history; the $match walks the message_identity index prefix.
        cursor = await self._queues.aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": "$correspondent_id",
                        "newest": {
                            "$topN": {
                                "n": per_correspondent,
                                "sortBy": {"id": -1},
                                "output": "$$ROOT",
                            }
                        },
                    }
                },
            ],
            allowDiskUse=True,
        )
        recent: dict[str, list[StoredMessage]] = {}
        async for row in cursor:
            messages = [_message(doc) for doc in row["newest"]]
            recent[row["_id"]] = sorted(messages, key=lambda m: m.id)
        return recent

    async def persisted_provider_ids(
        self, bot_id: str, provider_message_ids: Collection[str]
    ) -> set[str]:
        wanted = list(dict.fromkeys(provider_message_ids))
        if not wanted:
            return set()
        cursor = self._queues.find(
            {"bot_id": bot_id, "provider_message_id": {"$in": wanted}},
            {"provider_message_id": 1, "_id": 0},
        )
        return {doc["provider_message_id"] async for doc in cursor}

    # --- media jobs ----------------------------------------------------------------

    async def create_job(self, job: NewMediaJob) -> bool:
        for collection in (JobCollection.HOLDING, JobCollection.FAILED):
            if await self._jobs[collection].find_one({"_id": job.media_processing_id}, {"_id": 1}):
                return False
        now = _now()
        doc: Doc = {name: getattr(job, name) for name in NEW_JOB_FIELDS}
        doc.update(
            _id=job.media_processing_id,
            originating_time=truncate_to_millis(job.originating_time),
            status=JobStatus.PENDING.value,
            attempts=0,
            fence=0,
            claimed_by=None,
            lease_expires_at=None,
            available_at=now,
            result=None,
            error=None,
            created_at=now,
            created_ns=time.time_ns(),  # tie-break within one millisecond
            updated_at=now,
            failed_at=None,
            version=0,
        )
        try:
            await self._jobs[JobCollection.ACTIVE].insert_one(doc)
        except DuplicateKeyError:
            return False
        self._wake()
        return True

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None:
        for collection in JobCollection:
            doc = await self._jobs[collection].find_one({"_id": media_processing_id})
            if doc is not None:
                return collection, _job(doc)
        return None

    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        unique_pools = list(dict.fromkeys(pools))
        if not unique_pools:
            raise InvalidInputError("claim_job needs at least one pool")
        lease = _seconds(lease_seconds, "lease_seconds")
        now = _now()
        doc = await self._jobs[JobCollection.ACTIVE].find_one_and_update(
            {
                "$or": [
                    {
                        "status": JobStatus.PENDING.value,
                        "pool": {"$in": unique_pools},
                        "available_at": {"$lte": now},
                    },
                    {
                        "status": JobStatus.PROCESSING.value,
                        "pool": {"$in": unique_pools},
                        "lease_expires_at": {"$lt": now},
                    },
                ]
            },
            {
                "$set": {
                    "status": JobStatus.PROCESSING.value,
                    "claimed_by": worker_id,
                    "lease_expires_at": now + lease,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1, "fence": 1, "version": 1},
            },
            sort=[("created_at", ASCENDING), ("created_ns", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        job = _job(doc)
        return ClaimedJob(job=job, token=job.fence)

    async def _update_live(self, query: Doc, update: Doc) -> JobCollection | None:
        """Apply `update` in ACTIVE, else HOLDING; where it matched."""
        update = {**update, "$inc": {**update.get("$inc", {}), "version": 1}}
        for collection in _LIVE:
            result = await self._jobs[collection].update_one(query, update)
            if result.matched_count:
                return collection
        return None

    async def renew_lease(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        lease = _seconds(lease_seconds, "lease_seconds")
        now = _now()
        where = await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {"$set": {"lease_expires_at": now + lease, "updated_at": now}},
        )
        return where is not None

    async def complete_job(
        self, media_processing_id: str, token: int, result: str, error: str | None = None
    ) -> JobCollection | None:
        return await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {
                "$set": {
                    "status": JobStatus.COMPLETED.value,
                    "result": result,
                    "error": error,
                    "updated_at": _now(),
                }
            },
        )

    async def release_job(
        self, media_processing_id: str, token: int, error: str, retry_at: datetime
    ) -> bool:
        to_millis(retry_at, "retry_at")
        where = await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {
                "$set": {
                    "status": JobStatus.PENDING.value,
                    "error": error,
                    "available_at": truncate_to_millis(retry_at),
                    "claimed_by": None,
                    "lease_expires_at": None,
                    "updated_at": _now(),
                }
            },
        )
        if where is not None:
            self._wake()
        return where is not None

    async def resolve_stale_job(self, media_processing_id: str, result: str, error: str) -> bool:
        where = await self._update_live(
            {"_id": media_processing_id, "status": {"$ne": JobStatus.COMPLETED.value}},
            {
                "$set": {
                    "status": JobStatus.COMPLETED.value,
                    "result": result,
                    "error": error,
                    "claimed_by": None,
                    "lease_expires_at": None,
                    "updated_at": _now(),
                },
                "$inc": {"fence": 1},
            },
        )
        return where is not None

    async def delete_job(self, media_processing_id: str) -> bool:
        for collection in _LIVE:
            if (
                await self._jobs[collection].delete_one({"_id": media_processing_id})
            ).deleted_count:
                return True
        return False

    async def _move(
        self,
        source: JobCollection,
        target: JobCollection,
        query: Doc,
        transform: Any = None,
    ) -> bool:
        """Move the one document matching `query` from source to target; False if none.

        Copy, then delete the source only if unchanged; a changed source is copied again.
        If the copy in the target was changed meanwhile (a writer found it there first),
        the target is authoritative and the source is simply removed.
        """
        src, dst = self._jobs[source], self._jobs[target]
        doc = await src.find_one(query)
        if doc is None:
            return False
        written: Doc | None = None
        for _ in range(_MAX_MOVE_RETRIES):
            copy = dict(doc) if transform is None else transform(dict(doc))
            if written is None:
                await dst.replace_one({"_id": doc["_id"]}, copy, upsert=True)
            else:
                replaced = await dst.replace_one(
                    {"_id": doc["_id"], "version": written["version"]}, copy
                )
                if not replaced.matched_count:
                    await src.delete_one({"_id": doc["_id"]})
                    return True
            written = copy
            deleted = await src.delete_one({"_id": doc["_id"], "version": doc["version"]})
            if deleted.deleted_count:
                return True
            current = await src.find_one({"_id": doc["_id"]})
            if current is None or not _matches(current, query):
                # Deleted or changed beyond `query` meanwhile: undo our copy if untouched.
                await dst.delete_one({"_id": doc["_id"], "version": written["version"]})
                return False
            doc = current
        raise UnavailableError(
            f"job {doc['_id']} kept changing while being moved {source} → {target}; retry"
        )

    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool:
        query: Doc = {"_id": media_processing_id}
        if token is not None:
            query.update(status=JobStatus.PROCESSING.value, fence=token)

        def failed(doc: Doc) -> Doc:
            now = _now()
            return {
                **doc,
                "error": error,
                "failed_at": now,
                "updated_at": now,
                "version": doc["version"] + 1,
            }

        for collection in _LIVE:
            if await self._move(collection, JobCollection.FAILED, query, failed):
                return True
        return False

    async def move_bot_jobs(self, bot_id: str, source: JobCollection, target: JobCollection) -> int:
        if {source, target} != {JobCollection.ACTIVE, JobCollection.HOLDING}:
            raise InvalidInputError(
                f"move_bot_jobs moves between active and holding only, not {source} → {target}"
            )
        ids = [
            doc["_id"]
            async for doc in self._jobs[source]
            .find({"bot_id": bot_id}, {"_id": 1})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
        ]
        moved = 0
        for job_id in ids:
            if await self._move(source, target, {"_id": job_id, "bot_id": bot_id}):
                moved += 1
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def list_jobs(self, bot_id: str, collection: JobCollection) -> list[MediaJob]:
        cursor = (
            self._jobs[collection]
            .find({"bot_id": bot_id})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
        )
        return [_job(doc) async for doc in cursor]

    async def list_failed_jobs(self, bot_id: str | None = None, limit: int = 100) -> list[MediaJob]:
        if limit <= 0:
            return []
        query: Doc = {} if bot_id is None else {"bot_id": bot_id}
        cursor = (
            self._jobs[JobCollection.FAILED]
            .find(query)
            .sort([("failed_at", DESCENDING), ("created_ns", DESCENDING)])
            .limit(limit)
        )
        return [_job(doc) async for doc in cursor]

    async def requeue_failed_job(self, media_processing_id: str, target: JobCollection) -> bool:
        if target is JobCollection.FAILED:
            raise InvalidInputError("requeue_failed_job moves to active or holding, not failed")

        def requeued(doc: Doc) -> Doc:
            now = _now()
            return {
                **doc,
                "status": JobStatus.PENDING.value,
                "attempts": 0,
                "claimed_by": None,
                "lease_expires_at": None,
                "available_at": now,
                "result": None,
                "error": None,
                "updated_at": now,
                "failed_at": None,
                "version": doc["version"] + 1,
            }

        moved = await self._move(
            JobCollection.FAILED, target, {"_id": media_processing_id}, requeued
        )
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def pool_depths(self) -> dict[str, PoolDepth]:
        cursor = await self._jobs[JobCollection.ACTIVE].aggregate(
            [
                {
                    "$match": {
                        "status": {"$in": [JobStatus.PENDING.value, JobStatus.PROCESSING.value]}
                    }
                },
                {
                    "$group": {
                        "_id": {"pool": "$pool", "status": "$status"},
                        "count": {"$sum": 1},
                        "oldest": {"$min": "$created_at"},
                    }
                },
            ]
        )
        counts: dict[str, list[Any]] = {}
        async for row in cursor:
            entry = counts.setdefault(row["_id"]["pool"], [0, 0, None])
            if row["_id"]["status"] == JobStatus.PENDING.value:
                entry[0], entry[2] = row["count"], row["oldest"]
            else:
                entry[1] = row["count"]
        return {pool: PoolDepth(e[0], e[1], e[2]) for pool, e in counts.items()}

    async def jobs_older_than(
        self,
        collection: JobCollection,
        created_before: datetime,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[MediaJob]:
        to_millis(created_before, "created_before")
        check_page(limit, offset)
        if limit == 0:
            return []  # MongoDB reads limit(0) as "no limit"
        cursor = (
            self._jobs[collection]
            .find({"created_at": {"$lt": created_before}})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [_job(doc) async for doc in cursor]

    async def list_completed_jobs(
        self,
        collection: JobCollection,
        updated_before: datetime,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MediaJob]:
        to_millis(updated_before, "updated_before")
        check_page(limit, offset)
        if limit == 0:
            return []  # MongoDB reads limit(0) as "no limit"
        cursor = (
            self._jobs[collection]
            .find({"status": JobStatus.COMPLETED.value, "updated_at": {"$lt": updated_before}})
            .sort([("updated_at", ASCENDING), ("created_ns", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [_job(doc) async for doc in cursor]

    async def pending_routes(self) -> dict[str, str]:
        routes: dict[str, str] = {}
        for collection in _LIVE:
            cursor = await self._jobs[collection].aggregate(
                [
                    {"$match": {"status": JobStatus.PENDING.value}},
                    {"$group": {"_id": {"route": "$route", "pool": "$pool"}}},
                ]
            )
            async for row in cursor:
                routes[row["_id"]["route"]] = row["_id"]["pool"]
        return routes

    async def set_pool_for_route(self, route: str, pool: str) -> int:
        if not pool:
            raise InvalidInputError("set_pool_for_route: pool must not be empty")
        changed = 0
        for collection in _LIVE:
            result = await self._jobs[collection].update_many(
                {"status": JobStatus.PENDING.value, "route": route, "pool": {"$ne": pool}},
                {"$set": {"pool": pool, "updated_at": _now()}, "$inc": {"version": 1}},
            )
            changed += result.modified_count
        if changed:
            self._wake()
        return changed

    async def existing_job_ids(self, media_processing_ids: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(media_processing_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            for collection in JobCollection:
                cursor = self._jobs[collection].find({"_id": {"$in": chunk}}, {"_id": 1})
                found.update([doc["_id"] async for doc in cursor])
        return found

    async def wait_for_jobs(self, timeout: float) -> None:  # noqa: ASYNC109 (agreed name)
        if self._closed:
            raise UnavailableError("the MongoDB store is closed")
        if self._notifier is None:
            self._notifier = Notifier()
        if self._change_streams and self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(self._notifier))
        if self._change_streams:
            await self._notifier.wait(timeout)
        else:
            # No change streams (standalone server): other processes are seen by polling.
            await self._notifier.wait(min(timeout, POLL_INTERVAL_SECONDS))

    async def _watch(self, notifier: Notifier) -> None:
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
        while not self._closed:
            try:
                stream = await self._jobs[JobCollection.ACTIVE].watch(pipeline)
                async with stream:
                    async for _ in stream:
                        notifier.wake()
            except PyMongoError as exc:
                log.warning("change stream on media_processing_jobs failed (%s); polling", exc)
                self._change_streams = False
                notifier.wake()  # let current waiters fall back to polling at once
                return

    # --- leases --------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        ttl = _seconds(ttl_seconds, "ttl_seconds")
        if not name or not holder:
            raise InvalidInputError("acquire_lease needs a non-empty name and holder")
        now = _now()
        try:
            await self._leases.find_one_and_update(
                {"_id": name, "$or": [{"holder": holder}, {"expires_at": {"$lte": now}}]},
                {"$set": {"holder": holder, "expires_at": now + ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # held by someone else: the upsert tried to insert a second one
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        await self._leases.delete_one({"_id": name, "holder": holder})


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether `doc` still satisfies a plain equality query."""
    return all(doc.get(key) == value for key, value in query.items())
