"""The MongoDB adapter's helpers and plumbing (`MongoBase`); `mongo.py`,
`_mongo_jobs.py` and `_mongo_job_moves.py` build `MongoStore` on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    IndexModel,
    UpdateOne,
)
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services.common.errors import UnavailableError
from services.common.store import _rules as rules
from services.common.store._adapter_base import AdapterBase
from services.common.store._message_types import (
    MESSAGE_FIELDS,
    StoredMessage,
)
from services.common.store._notify import Notifier
from services.common.store._types import (
    JOB_FIELDS,
    JobCollection,
    JobStatus,
    MediaJob,
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
# A user lacking the privilege for a command (db_roles.py decides who has which).
_UNAUTHORIZED = 13
_INDEX_NOT_FOUND = 27
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
    # Documents written before claim order existed were claimed in arrival order (a
    # missing field sorts first, so they still go before every newer job).
    values["claim_delay_ms"] = doc.get("claim_delay_ms", 0)
    values["claim_at"] = doc.get("claim_at", doc["created_at"])
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


class MongoBase(AdapterBase):
    """The plumbing every part of `MongoStore` shares: the collections, indexes, one-time
    backfills, transactions, and the change stream that wakes `wait_for_jobs`."""

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
        # Baileys auth state, one document per (bot, key type, key id).
        self._auth: AsyncCollection[Doc] = db["whatsapp_auth"]
        # One counter document per bot ({_id: bot_id, last}): the delivery sequences.
        self._sequences: AsyncCollection[Doc] = db["queue_sequences"]
        self._cursors: AsyncCollection[Doc] = db["delivery_cursors"]
        # Per-bot API tokens (`_mongo_tokens.py`): hashes only, `_id` the token id.
        self._api_tokens: AsyncCollection[Doc] = db["api_tokens"]
        # The identity map: {bot_id, phone_jid, lid, settled, learned_at}.
        self._identities: AsyncCollection[Doc] = db["identities"]
        self._migrations: AsyncCollection[Doc] = db[_MIGRATIONS]
        self._jobs: dict[JobCollection, AsyncCollection[Doc]] = {
            c: db[c.collection_name] for c in JobCollection
        }
        self._change_streams = change_streams
        # Multi-document transactions need a replica set or mongos, as change streams do.
        self._transactions = change_streams if transactions is None else transactions
        # Whether the change stream is open now; waiters poll while it is not.
        self._stream_open = False
        super().__init__()
        self._step_hook: StepHook | None = None
        self._watch_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, uri: str, database: str) -> Self:
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
        await self._indexes(
            self._queues,
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
            ],
        )
        await self._indexes(
            self._cursors,
            [IndexModel([("consumer", 1), ("bot_id", 1)], unique=True, name="consumer_bot")],
        )
        await self._indexes(
            self._api_tokens, [IndexModel([("bot_id", 1), ("created_at", 1)], name="bot")]
        )
        await self._indexes(
            self._auth,
            [IndexModel([("bot_id", 1), ("kind", 1), ("key_id", 1)], unique=True, name="auth_key")],
        )
        # A phone JID and a LID each belong to one person per bot.
        await self._indexes(
            self._identities,
            [
                IndexModel([("bot_id", 1), ("phone_jid", 1)], unique=True, name="bot_phone"),
                IndexModel([("bot_id", 1), ("lid", 1)], unique=True, name="bot_lid"),
            ],
        )
        for collection in _LIVE:
            await self._indexes(
                self._jobs[collection],
                [
                    # Equality, sort, range: the claim walks (status, pool) in claim order
                    # and checks available_at from the index.
                    IndexModel(
                        [
                            ("status", 1),
                            ("pool", 1),
                            ("claim_at", 1),
                            ("created_ns", 1),
                            ("available_at", 1),
                        ],
                        name="claim_order",
                    ),
                    IndexModel([("bot_id", 1), ("created_at", 1)], name="bot"),
                    IndexModel([("correspondent_id", 1)], name="correspondent"),
                    IndexModel([("lease_expires_at", 1)], name="lease_expiry"),
                    IndexModel([("created_at", 1)], name="created"),
                    IndexModel([("status", 1), ("route", 1)], name="route"),
                ],
            )
            # The arrival-order claim index of databases made before claim order: no
            # query uses it any more, and every job write would still maintain it.
            await self._drop_index(self._jobs[collection], "claim")
        for collection in JobCollection:
            # list_completed_jobs: equality, then the sort (created_ns orders equal times).
            await self._indexes(
                self._jobs[collection],
                [
                    IndexModel(
                        [("status", 1), ("updated_at", 1), ("created_ns", 1)], name="completed"
                    )
                ],
            )
        await self._indexes(
            self._jobs[JobCollection.FAILED],
            [
                IndexModel([("created_at", 1)], name="created"),
                IndexModel([("error", 1)], name="error"),
                IndexModel([("failed_at", -1)], name="failed_at"),
                IndexModel([("bot_id", 1), ("failed_at", -1)], name="bot_failed_at"),
                IndexModel([("correspondent_id", 1)], name="correspondent"),
            ],
        )

    async def _drop_index(self, collection: AsyncCollection[Doc], name: str) -> None:
        """Drops index `name` if it is there; a service user without the right leaves it
        to the provisioning run, as `_indexes` does."""
        try:
            await collection.drop_index(name)
        except OperationFailure as exc:
            if exc.code == _INDEX_NOT_FOUND:
                return
            if exc.code != _UNAUTHORIZED:
                raise
            log.debug(
                "no right to drop index %s on %s; provisioning drops it", name, collection.name
            )

    async def _indexes(self, collection: AsyncCollection[Doc], models: list[IndexModel]) -> None:
        """Creates `models` on `collection`; a service user without the right to create
        indexes there (db_roles.py: it only reads it) leaves them to the provisioning
        run, which creates every index as the administrator."""
        try:
            await collection.create_indexes(models)
        except OperationFailure as exc:
            if exc.code != _UNAUTHORIZED:
                raise
            log.debug("no right to create indexes on %s; provisioning made them", collection.name)

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

    async def max_sequence(self, bot_id: str) -> int:
        doc = await self._queues.find_one(
            {"bot_id": bot_id, "sequence": {"$exists": True}},
            {"sequence": 1},
            sort=[("sequence", DESCENDING)],
        )
        return 0 if doc is None else int(doc["sequence"])

    async def _close_resources(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await self._client.close()

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


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether `doc` still satisfies a plain equality query."""
    return all(doc.get(key) == value for key, value in query.items())
