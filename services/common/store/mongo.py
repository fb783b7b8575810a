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

import logging
import re
from typing import Any

from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.store import _rules as rules
from services.common.store._mongo_auth import MongoAuth
from services.common.store._mongo_base import (
    _UNAUTHORIZED,
    _now,
    _seconds,
)
from services.common.store._mongo_dead_letters import MongoDeadLetters
from services.common.store._mongo_identities import MongoIdentities
from services.common.store._mongo_jobs import MongoJobs
from services.common.store._mongo_media_usage import MongoMediaUsage
from services.common.store._mongo_messages import MongoMessages
from services.common.store._mongo_outbox import MongoOutbox
from services.common.store._mongo_tokens import MongoApiTokens
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    DEFINITIONS_DOCUMENT_ID,
    BotConfig,
    listed_bots,
)

log = logging.getLogger(__name__)


class MongoStore(
    MongoJobs,
    MongoMessages,
    MongoAuth,
    MongoDeadLetters,
    MongoApiTokens,
    MongoIdentities,
    MongoOutbox,
    MongoMediaUsage,
):
    """The `Store` on a MongoDB database (replica set recommended: change streams), split
    as the aggregates are: bot configurations, the registry of active bots, the
    definitions document and leases here; messages and cursors in `MongoMessages`; media
    jobs in `MongoJobs` (`_mongo_jobs.py`, `_mongo_job_moves.py`); webhook dead letters in
    `MongoDeadLetters`; per-bot API tokens in `MongoApiTokens`; the identity map in
    `MongoIdentities`; the outgoing-message outbox in `MongoOutbox`; plumbing in
    `MongoBase`."""

    async def get_bot_config(self, bot_id: str) -> BotConfig | None:
        if bot_id in rules.RESERVED_IDS:
            return None
        doc = await self._configs.find_one({"_id": bot_id})
        return None if doc is None else BotConfig.from_document({**doc, "bot_id": bot_id})

    async def put_bot_config(self, config: BotConfig) -> None:
        rules.check_writable_bot_id(config.bot_id)
        doc = config.to_document()
        await self._configs.replace_one({"_id": config.bot_id}, doc, upsert=True)

    async def configured_bots(self) -> list[str]:
        reserved = sorted(rules.RESERVED_IDS)
        cursor = self._configs.find({"_id": {"$nin": reserved}}, {"_id": 1}).sort("_id", 1)
        return [str(doc["_id"]) async for doc in cursor]

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
        # Read first: media_svc's user may read but not write bot_configurations
        # (db_roles.py), and the document is normally there already.
        if await self._configs.find_one({"_id": DEFINITIONS_DOCUMENT_ID}, {"_id": 1}):
            return False
        try:
            await self._configs.insert_one({**body, "_id": DEFINITIONS_DOCUMENT_ID})
        except DuplicateKeyError:
            return False
        except OperationFailure as exc:
            if exc.code != _UNAUTHORIZED:
                raise
            # queue_svc (or the gateway's first start) seeds it; the reader uses the
            # built-in table until then and reloads it later.
            log.warning("this store user may not seed the processor definitions; waiting")
            return False
        return True

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

    async def lease_holders(self, prefix: str) -> dict[str, str]:
        query = {"_id": {"$regex": f"^{re.escape(prefix)}"}, "expires_at": {"$gt": _now()}}
        return {
            str(doc["_id"]): str(doc["holder"])
            async for doc in self._leases.find(query, {"holder": 1})
        }
