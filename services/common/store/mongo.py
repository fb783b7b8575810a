"""The production adapter: MongoDB through PyMongo's native asyncio client.

Claims are one `find_one_and_update` (sorted, ReturnDocument.AFTER) on the claim index.

A job lives in one of three collections, so moves, creates and the updates that must find
the job wherever it is touch several documents. On a replica set (or mongos) each of
them is one multi-document transaction: no interleaving of moves, completions and
creates loses or duplicates a job. On a standalone server (no transactions) moves copy
first, with `version` bumped so the copy is distinguishable from its source, and then
delete the source only if its version is unchanged (compare-and-delete); a copy never
overwrites a newer document. So a job always exists somewhere (never a loss); crossing
operations can leave a duplicate that the next move settles. Updates that find the job
wherever it lives re-read until two reads of all three collections agree, so a move
between two steps cannot make a live job look gone.

Change streams (replica set or sharded cluster) wake `wait_for_jobs`; without them, or
while a broken stream is being re-opened with backoff, it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    IndexModel,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services.common.errors import UnavailableError
from services.common.store import _rules as rules
from services.common.store._notify import Notifier
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    DEFINITIONS_DOCUMENT_ID,
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
    listed_bots,
    to_millis,
    truncate_to_millis,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
Session = AsyncClientSession | None
# Tests only: awaited with a step name between two steps of a multi-step operation, so a
# test can run a competing operation exactly there (see `MongoStore.set_step_hook`).
StepHook = Callable[[str], Awaitable[None]]
_T = TypeVar("_T")
POLL_INTERVAL_SECONDS = 0.5
# A broken change stream is re-opened after this delay, doubling up to the maximum;
# waiters poll meanwhile.
STREAM_RETRY_SECONDS = 0.5
STREAM_RETRY_MAX_SECONDS = 30.0
_DUPLICATE_KEY = 11000
_LIVE = (JobCollection.ACTIVE, JobCollection.HOLDING)
_MAX_MOVE_RETRIES = 50
# `store_migrations` records one-time data migrations, so a start does not scan every
# job document again (`_backfill`).
_MIGRATIONS = "store_migrations"
_FENCE_BACKFILL = "fence_backfill"
_SEQUENCE_BACKFILL = "sequence_backfill"


def _now() -> datetime:
    return truncate_to_millis(datetime.now(UTC))


def _seconds(value: float, what: str) -> timedelta:
    return timedelta(seconds=rules.check_seconds(value, what))


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
    """Whether every error is a duplicate key: a write-concern error (the writes may not
    be durable or replicated) is never one, so it propagates."""
    if error.details.get("writeConcernErrors"):
        return False
    return all(e.get("code") == _DUPLICATE_KEY for e in error.details.get("writeErrors", []))


def _message_key(doc: Doc) -> tuple[Any, ...]:
    return (doc["bot_id"], doc["provider_name"], doc["correspondent_id"], doc["id"])


class MongoStore:
    """The `Store` on a MongoDB database (replica set recommended: change streams)."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        change_streams: bool,
        transactions: bool | None = None,
    ) -> None:
        self._client = client
        db = client[database]
        self._configs: AsyncCollection[Doc] = db["bot_configurations"]
        self._queues: AsyncCollection[Doc] = db["queues"]
        self._leases: AsyncCollection[Doc] = db["leases"]
        # One counter document per bot ({_id: bot_id, last}): the delivery sequences.
        self._sequences: AsyncCollection[Doc] = db["queue_sequences"]
        self._cursors: AsyncCollection[Doc] = db["delivery_cursors"]
        self._migrations: AsyncCollection[Doc] = db[_MIGRATIONS]
        self._jobs: dict[JobCollection, AsyncCollection[Doc]] = {
            c: db[c.collection_name] for c in JobCollection
        }
        self._change_streams = change_streams
        # Multi-document transactions need a replica set or mongos, as change streams do.
        self._transactions = change_streams if transactions is None else transactions
        # Whether the change stream is open now; waiters poll while it is not.
        self._stream_open = False
        self._step_hook: StepHook | None = None
        self._notifier: Notifier | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, uri: str, database: str) -> MongoStore:
        client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, tz_aware=True, tzinfo=UTC)
        try:
            hello = await client.admin.command("hello")
            # Change streams and transactions need a replica set or a mongos.
            replicated = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            store = cls(client, database, change_streams=replicated, transactions=replicated)
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

    @property
    def uses_transactions(self) -> bool:
        """True on a replica set or mongos: moves, creates and cross-collection updates
        are transactions; False on a standalone server (compare-and-delete copies)."""
        return self._transactions

    @property
    def change_stream_open(self) -> bool:
        """Whether `wait_for_jobs` is woken by a change stream now (else it polls)."""
        return self._stream_open

    def set_step_hook(self, hook: StepHook | None) -> None:
        """Tests only: `hook(step)` is awaited between the two steps of `create_job`
        ("create"), a move ("move"), and an update or read that looks for a job in
        several collections ("update_live", "get_job", "fail_job"), so a deterministic
        test can run a competing operation in exactly that window."""
        self._step_hook = hook

    async def _step(self, name: str) -> None:
        if self._step_hook is not None:
            await self._step_hook(name)

    async def _in_transaction(self, body: Callable[[AsyncClientSession], Awaitable[_T]]) -> _T:
        """Run `body` in one transaction; a write conflict with a concurrent one (a
        TransientTransactionError) makes PyMongo run it again, so `body` must re-read."""
        async with self._client.start_session() as session:
            return await session.with_transaction(
                body, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
            )

    async def _backfill(self) -> None:
        """Fills fields added after the first release into existing job documents, once.

        Until `fence` existed the token was `attempts`; continuing from it keeps every
        token issued before the upgrade refused once the job is claimed again. `fence`
        has no index, so this scans every job document: a marker in `store_migrations`,
        written when the scan is done, keeps later starts from repeating it. A process
        of an older release still running during a rolling upgrade can write a job
        without `fence` after the marker; `_job` reads `attempts` for it then.
        """
        await self._backfill_sequences()
        if await self._migrations.find_one({"_id": _FENCE_BACKFILL}) is not None:
            return
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
        # Two processes starting together may both upsert the marker first.
        with contextlib.suppress(DuplicateKeyError):
            await self._migrations.update_one(
                {"_id": _FENCE_BACKFILL}, {"$set": {"done_at": _now()}}, upsert=True
            )

    async def _backfill_sequences(self) -> None:
        """Numbers messages stored before delivery sequences existed (insertion order,
        i.e. ObjectId order) and moves every bot's counter past its highest sequence,
        once: `sequence` missing is not indexed, so a marker keeps later starts from
        scanning `queues` again."""
        if await self._migrations.find_one({"_id": _SEQUENCE_BACKFILL}) is not None:
            return
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
        with contextlib.suppress(DuplicateKeyError):
            await self._migrations.update_one(
                {"_id": _SEQUENCE_BACKFILL}, {"$set": {"done_at": _now()}}, upsert=True
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
        if bot_id in rules.RESERVED_IDS:
            return None
        doc = await self._configs.find_one({"_id": bot_id})
        return None if doc is None else BotConfig.from_document({**doc, "bot_id": bot_id})

    async def put_bot_config(self, config: BotConfig) -> None:
        rules.check_writable_bot_id(config.bot_id)
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
        rules.check_active_bot_id(bot_id)
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
        for doc in docs:
            doc["originating_time"] = truncate_to_millis(doc["originating_time"])
        # Rows already stored keep their sequence and take no new number: one bot's
        # messages have one writer (the queue_svc owning the bot), so looking first and
        # numbering only the new rows leaves no gap for a retried batch.
        known = await self._stored_sequences(docs)
        fresh = [doc for doc in docs if _message_key(doc) not in known]
        per_bot: dict[str, int] = {}
        for doc in fresh:
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
        for doc in fresh:
            doc["sequence"] = next_of[doc["bot_id"]]
            next_of[doc["bot_id"]] += 1
        sequences = [
            known[_message_key(doc)] if _message_key(doc) in known else int(doc["sequence"])
            for doc in docs
        ]
        failed: list[int] = []
        if fresh:
            try:
                await self._queues.insert_many(fresh, ordered=False)
            except BulkWriteError as exc:
                if not _only_duplicates(exc):
                    raise
                failed = sorted(e["index"] for e in exc.details.get("writeErrors", []))
        for failed_index in failed:
            doc = fresh[failed_index]
            index = docs.index(doc)
            existing = await self._queues.find_one(
                {key: doc[key] for key in ("bot_id", "provider_name", "correspondent_id", "id")},
                {"sequence": 1},
            )
            if existing is None or existing.get("sequence") is None:
                raise UnavailableError(
                    "a delivery sequence collided with another writer's; retry the insert"
                )
            sequences[index] = int(existing["sequence"])
        return AppendResult(sequences, len(fresh) - len(failed))

    async def _stored_sequences(self, docs: Sequence[Doc]) -> dict[tuple[Any, ...], int]:
        """The sequences of the rows of `docs` that are stored already, by key."""
        ids_of: dict[tuple[Any, ...], list[int]] = {}
        for doc in docs:
            ids_of.setdefault(
                (doc["bot_id"], doc["provider_name"], doc["correspondent_id"]), []
            ).append(doc["id"])
        found: dict[tuple[Any, ...], int] = {}
        for (bot_id, provider, correspondent), ids in ids_of.items():
            async for row in self._queues.find(
                {
                    "bot_id": bot_id,
                    "provider_name": provider,
                    "correspondent_id": correspondent,
                    "id": {"$in": ids},
                },
                {"id": 1, "sequence": 1},
            ):
                if row.get("sequence") is not None:
                    found[(bot_id, provider, correspondent, row["id"])] = int(row["sequence"])
        return found

    async def messages_after(
        self, bot_id: str, after_sequence: int, limit: int = 500
    ) -> list[StoredMessage]:
        rules.check_page(limit)
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
        rules.check_consumer(consumer, bot_id, sequence)
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
        rules.check_page(limit)
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
        rules.check_per_correspondent(per_correspondent)
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
        job_id = job.media_processing_id
        active = self._jobs[JobCollection.ACTIVE]
        if self._transactions:

            async def create(session: AsyncClientSession) -> bool:
                for collection in (JobCollection.HOLDING, JobCollection.FAILED):
                    if await self._jobs[collection].find_one({"_id": job_id}, session=session):
                        return False
                await self._step("create")
                # A move that took the job out of active after this snapshot conflicts
                # with this insert, and the transaction runs again.
                await active.insert_one(doc, session=session)
                return True

            try:
                created = await self._in_transaction(create)
            except DuplicateKeyError:
                return False
        else:
            # Insert first, then look elsewhere: a job that is in active (or moved into
            # it) at any point makes the insert fail; one in holding or failed after the
            # insert is found by the check, which withdraws the insert; one moved into
            # active over the insert replaced it (a copy never loses to an older
            # version). `created_ns` tells this insert from the job that existed.
            ours = doc["created_ns"]
            try:
                await active.insert_one(doc)
            except DuplicateKeyError:
                return False
            await self._step("create")
            created = True
            for collection in (JobCollection.HOLDING, JobCollection.FAILED):
                other = await self._jobs[collection].find_one({"_id": job_id}, {"created_ns": 1})
                if other is not None and other.get("created_ns") != ours:
                    # Withdraw only the untouched insert. If a worker claimed it in this
                    # window it stays, a duplicate that the next move settles.
                    await active.delete_one({"_id": job_id, "version": 0, "created_ns": ours})
                    created = False
                    break
            if created:
                now_there = await active.find_one({"_id": job_id}, {"created_ns": 1})
                created = now_there is None or now_there.get("created_ns") == ours
        if created:
            self._wake()
        return created

    async def _find_everywhere(self, job_id: str, session: Session) -> dict[JobCollection, Doc]:
        found: dict[JobCollection, Doc] = {}
        for n, collection in enumerate(JobCollection):
            if n:
                await self._step("get_job")
            doc = await self._jobs[collection].find_one({"_id": job_id}, session=session)
            if doc is not None:
                found[collection] = doc
        return found

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None:
        # The common case, one read: a job found in active is there at that moment.
        doc = await self._jobs[JobCollection.ACTIVE].find_one({"_id": media_processing_id})
        if doc is not None:
            return JobCollection.ACTIVE, _job(doc)
        if self._transactions:
            # One snapshot of the three collections: a move is either before or after it.
            found = await self._in_transaction(
                lambda session: self._find_everywhere(media_processing_id, session)
            )
        else:
            found = await self._consistently(
                media_processing_id,
                lambda: self._find_everywhere(media_processing_id, None),
                bool,
            )
        if not found:
            return None
        # Mid-move on a standalone server the job can be in two places: the copy has the
        # higher version.
        collection = max(found, key=lambda c: found[c].get("version", 0))
        return collection, _job(found[collection])

    async def _versions(self, job_id: str) -> tuple[int | None, ...]:
        versions: list[int | None] = []
        for collection in JobCollection:
            doc = await self._jobs[collection].find_one({"_id": job_id}, {"version": 1})
            versions.append(None if doc is None else int(doc.get("version", 0)))
        return tuple(versions)

    async def _consistently(
        self,
        job_id: str,
        attempt: Callable[[], Awaitable[_T]],
        succeeded: Callable[[_T], bool],
    ) -> _T:
        """Without transactions: `attempt` (which looks in several collections in turn)
        until it succeeds, or until it fails while no copy of the job changed.

        Every move writes a copy with a higher `version` before it deletes the source, and
        every update bumps `version`, so equal versions in all three collections before
        and after a failed attempt mean no move ran in between: the failure is real.
        """
        outcome = await attempt()
        for _ in range(_MAX_MOVE_RETRIES):
            if succeeded(outcome):
                return outcome
            before = await self._versions(job_id)
            outcome = await attempt()
            if succeeded(outcome) or await self._versions(job_id) == before:
                return outcome
        raise UnavailableError(f"job {job_id} kept moving while being looked up; retry")

    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        unique_pools = rules.claim_pools(pools)
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
        """Apply `update` to the job where it lives (ACTIVE, else HOLDING); where it matched."""
        update = {**update, "$inc": {**update.get("$inc", {}), "version": 1}}
        job_id: str = query["_id"]
        # The common case, one atomic update: a job found in active is where it lives
        # (mid-move on a standalone server, the move then carries the update along).
        if (await self._jobs[JobCollection.ACTIVE].update_one(query, update)).matched_count:
            return JobCollection.ACTIVE

        async def apply(session: Session) -> JobCollection | None:
            where: JobCollection | None = None
            for n, collection in enumerate(_LIVE):
                if n:
                    await self._step("update_live")
                result = await self._jobs[collection].update_one(query, update, session=session)
                if result.matched_count and where is None:
                    where = collection
                    if session is not None:
                        break
                # Without transactions a job mid-move has two copies: both get the update,
                # so the copy the move keeps has it.
            return where

        if self._transactions:
            return await self._in_transaction(apply)
        return await self._consistently(job_id, lambda: apply(None), lambda w: w is not None)

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
        async def delete(session: Session) -> bool:
            deleted = False
            for collection in _LIVE:
                # Every copy: mid-move (standalone server) the job can be in both.
                result = await self._jobs[collection].delete_one(
                    {"_id": media_processing_id}, session=session
                )
                deleted = deleted or bool(result.deleted_count)
            return deleted

        if self._transactions:
            # Moves are atomic here: a job deleted from active was nowhere else.
            active = self._jobs[JobCollection.ACTIVE]
            if (await active.delete_one({"_id": media_processing_id})).deleted_count:
                return True
            return await self._in_transaction(delete)
        return await self._consistently(media_processing_id, lambda: delete(None), bool)

    async def _move(
        self,
        source: JobCollection,
        target: JobCollection,
        query: Doc,
        transform: Callable[[Doc], Doc] | None = None,
        session: Session = None,
    ) -> bool:
        """Move the one document matching `query` from source to target; False if none.

        The copy gets `version + 1`. In a transaction (`session`) that is all; the
        transaction makes copy and delete one step. Without one, the copy never replaces
        a newer document in the target, and the source is deleted only if its version is
        unchanged (compare-and-delete): a changed source is copied again, and a target
        already as new as the copy is authoritative, so the source goes. A job thus always
        exists somewhere, whatever runs concurrently.
        """
        src, dst = self._jobs[source], self._jobs[target]
        doc = await src.find_one(query, session=session)
        if doc is None:
            return False
        job_id = doc["_id"]
        for _ in range(_MAX_MOVE_RETRIES):
            copy = dict(doc) if transform is None else transform(dict(doc))
            copy["version"] = doc.get("version", 0) + 1
            if session is not None:
                await dst.replace_one({"_id": job_id}, copy, upsert=True, session=session)
                await self._step("move")
                await src.delete_one({"_id": job_id}, session=session)
                return True
            # A DuplicateKeyError: the target holds this job, as new as the copy or newer,
            # and stays.
            with contextlib.suppress(DuplicateKeyError):
                await dst.replace_one(
                    {"_id": job_id, "version": {"$lt": copy["version"]}}, copy, upsert=True
                )
            await self._step("move")
            deleted = await src.delete_one({"_id": job_id, "version": doc.get("version", 0)})
            if deleted.deleted_count:
                return True
            current = await src.find_one({"_id": job_id})
            if current is None:
                return True  # another move took the source; the job is in the target
            if not _matches(current, query):
                # Changed beyond `query` (a new claim): not ours to move. Withdraw our
                # copy if untouched; the source, newer than it, keeps the job.
                await dst.delete_one({"_id": job_id, "version": copy["version"]})
                return False
            doc = current
        raise UnavailableError(
            f"job {job_id} kept changing while being moved {source} → {target}; retry"
        )

    async def _move_in_transaction(
        self,
        source: JobCollection,
        target: JobCollection,
        query: Doc,
        transform: Callable[[Doc], Doc] | None = None,
    ) -> bool:
        if not self._transactions:
            return await self._move(source, target, query, transform)
        return await self._in_transaction(
            lambda session: self._move(source, target, query, transform, session)
        )

    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool:
        query: Doc = {"_id": media_processing_id}
        if token is not None:
            query.update(status=JobStatus.PROCESSING.value, fence=token)

        def failed(doc: Doc) -> Doc:
            now = _now()
            return {**doc, "error": error, "failed_at": now, "updated_at": now}

        async def fail(session: Session) -> bool:
            for n, collection in enumerate(_LIVE):
                if n:
                    await self._step("fail_job")
                if await self._move(collection, JobCollection.FAILED, query, failed, session):
                    return True
            return False

        if self._transactions:
            return await self._in_transaction(fail)
        return await self._consistently(media_processing_id, lambda: fail(None), bool)

    async def move_bot_jobs(self, bot_id: str, source: JobCollection, target: JobCollection) -> int:
        rules.check_bot_move(source, target)
        ids = [
            doc["_id"]
            async for doc in self._jobs[source]
            .find({"bot_id": bot_id}, {"_id": 1})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
        ]
        moved = 0
        for job_id in ids:
            # One transaction per job: a bot's jobs can exceed what one transaction holds.
            if await self._move_in_transaction(source, target, {"_id": job_id, "bot_id": bot_id}):
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
        rules.check_page(limit)
        if limit == 0:  # PyMongo reads limit(0) as no limit
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
        rules.check_requeue_target(target)

        def requeued(doc: Doc) -> Doc:
            return {**doc, **rules.requeue_reset(_now())}

        moved = await self._move_in_transaction(
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
        rules.check_page(limit, offset)
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
        rules.check_page(limit, offset)
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
        rules.check_route_pool(pool)
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
        if self._stream_open:
            await self._notifier.wait(timeout)
        else:
            # No change stream (standalone server, or one being re-opened): other
            # processes are seen by polling.
            await self._notifier.wait(min(timeout, POLL_INTERVAL_SECONDS))

    async def _watch(self, notifier: Notifier) -> None:
        """Wake waiters on every change to active jobs; re-open a broken stream with
        backoff (waiters poll meanwhile), since a replica set election or a network
        blip breaks it and would otherwise leave this process polling for good."""
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
        delay = STREAM_RETRY_SECONDS
        reopening = False
        while not self._closed:
            try:
                stream = await self._jobs[JobCollection.ACTIVE].watch(pipeline)
                async with stream:
                    self._stream_open = True
                    delay = STREAM_RETRY_SECONDS
                    if reopening:
                        # Changes made while no stream was open are not replayed: wake
                        # waiters so they look once.
                        notifier.wake()
                    async for _ in stream:
                        notifier.wake()
            except PyMongoError as exc:
                log.warning(
                    "change stream on media_processing_jobs failed (%s); polling, retry in %.1f s",
                    exc,
                    delay,
                )
            self._stream_open = False
            reopening = True
            notifier.wake()  # let current waiters fall back to polling at once
            await asyncio.sleep(delay)
            delay = min(delay * 2, STREAM_RETRY_MAX_SECONDS)

    # --- leases --------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        ttl = _seconds(ttl_seconds, "ttl_seconds")
        rules.check_lease_names(name, holder)
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
