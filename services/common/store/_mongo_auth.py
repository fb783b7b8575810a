"""Baileys auth state on MongoDB: one document per (bot, key type, key id); a set of
changes is one transaction on a replica set, one bulk write (each key atomic) otherwise."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from services.common.store import _rules as rules
from services.common.store._mongo_base import MongoBase


class MongoAuth(MongoBase):
    async def get_auth_values(
        self, bot_id: str, kind: str, key_ids: Collection[str]
    ) -> dict[str, str]:
        rules.check_auth_keys(bot_id, kind, key_ids)
        found: dict[str, str] = {}
        query = {"bot_id": bot_id, "kind": kind, "key_id": {"$in": list(set(key_ids))}}
        async for doc in self._auth.find(query, {"key_id": 1, "value": 1}):
            found[str(doc["key_id"])] = str(doc["value"])
        return found

    async def set_auth_values(self, bot_id: str, changes: dict[str, dict[str, str | None]]) -> None:
        rules.check_auth_changes(bot_id, changes)
        operations: list[Any] = []
        for kind, values in changes.items():
            for key_id, value in values.items():
                key = {"bot_id": bot_id, "kind": kind, "key_id": key_id}
                if value is None:
                    operations.append(DeleteOne(key))
                else:
                    operations.append(UpdateOne(key, {"$set": {"value": value}}, upsert=True))
        if not operations:
            return
        if self.uses_transactions:

            async def write(session: AsyncClientSession) -> None:
                await self._auth.bulk_write(operations, ordered=True, session=session)

            await self._in_transaction(write)
        else:
            await self._auth.bulk_write(operations, ordered=True)

    async def forget_auth(self, bot_id: str) -> int:
        rules.check_auth_keys(bot_id, "creds", ())
        result = await self._auth.delete_many({"bot_id": bot_id})
        return int(result.deleted_count)
