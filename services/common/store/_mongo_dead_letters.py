"""The MongoDB adapter's webhook dead letters (`WebhookDeadLetterStore`): collection
`webhook_dead_letters`, `_id` = `<bot_id>:<sequence>` (so a repeated put replaces)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from services.common.store import _rules as rules
from services.common.store._dead_letters import (
    DEAD_LETTER_FIELDS,
    DEAD_LETTER_TIMES,
    WebhookDeadLetter,
    check_sequence,
)
from services.common.store._mongo_base import Doc, MongoBase
from services.common.store._types import truncate_to_millis

DEAD_LETTERS_COLLECTION = "webhook_dead_letters"


def _key(bot_id: str, sequence: int) -> str:
    return f"{bot_id}:{sequence}"


def _letter(doc: Mapping[str, Any]) -> WebhookDeadLetter:
    values: dict[str, Any] = {name: doc.get(name) for name in DEAD_LETTER_FIELDS}
    return WebhookDeadLetter(**values)


class MongoDeadLetters(MongoBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An attribute, like every collection of the store: db_roles' test lists them.
        self._dead_letters: AsyncCollection[Doc] = self._configs.database[DEAD_LETTERS_COLLECTION]

    async def _create_indexes(self) -> None:
        await super()._create_indexes()
        await self._indexes(
            self._dead_letters,
            [IndexModel([("bot_id", 1), ("sequence", 1)], unique=True, name="bot_sequence")],
        )

    async def put_webhook_dead_letter(self, letter: WebhookDeadLetter) -> bool:
        doc: Doc = {
            name: truncate_to_millis(getattr(letter, name))
            if name in DEAD_LETTER_TIMES
            else getattr(letter, name)
            for name in DEAD_LETTER_FIELDS
        }
        result = await self._dead_letters.replace_one(
            {"_id": _key(letter.bot_id, letter.sequence)}, doc, upsert=True
        )
        return result.upserted_id is not None

    async def webhook_dead_letters(
        self, bot_id: str, after_sequence: int = 0, limit: int = 100
    ) -> list[WebhookDeadLetter]:
        rules.check_page(limit)
        if limit == 0:
            return []  # MongoDB reads limit 0 as no limit
        cursor = (
            self._dead_letters.find({"bot_id": bot_id, "sequence": {"$gt": after_sequence}})
            .sort("sequence", 1)
            .limit(limit)
        )
        return [_letter(doc) async for doc in cursor]

    async def get_webhook_dead_letter(self, bot_id: str, sequence: int) -> WebhookDeadLetter | None:
        check_sequence(sequence)
        doc = await self._dead_letters.find_one({"_id": _key(bot_id, sequence)})
        return None if doc is None else _letter(doc)

    async def delete_webhook_dead_letter(self, bot_id: str, sequence: int) -> bool:
        check_sequence(sequence)
        result = await self._dead_letters.delete_one({"_id": _key(bot_id, sequence)})
        return result.deleted_count == 1

    async def webhook_dead_letter_counts(self) -> dict[str, int]:
        rows = await self._dead_letters.aggregate(
            [{"$group": {"_id": "$bot_id", "count": {"$sum": 1}}}]
        )
        return {row["_id"]: int(row["count"]) async for row in rows}
