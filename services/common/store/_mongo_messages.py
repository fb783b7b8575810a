"""The MongoDB adapter's messages (`MessageStore`): persisted messages with their per-bot
delivery sequences, history reads, and named consumers' cursors."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pymongo import (
    ASCENDING,
    DESCENDING,
    ReturnDocument,
)
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.errors import UnavailableError
from services.common.store import _rules as rules
from services.common.store._adapter_base import MessagesBase
from services.common.store._message_types import (
    MESSAGE_INPUT_FIELDS,
    AppendResult,
    StoredMessage,
)
from services.common.store._mongo_base import (
    Doc,
    MongoBase,
    _message,
    _message_key,
    _now,
    _only_duplicates,
)
from services.common.store._types import (
    truncate_to_millis,
)


class MongoMessages(MongoBase, MessagesBase):
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

    async def _recent_messages(
        self, bot_id: str, provider_name: str, per_correspondent: int, since: datetime | None
    ) -> dict[str, list[StoredMessage]]:
        match: Doc = {"bot_id": bot_id, "provider_name": provider_name}
        if since is not None:
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
