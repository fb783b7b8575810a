"""The MongoDB adapter's identity map (`IdentityStore`): one document per (bot, phone
JID), with unique indexes on (bot_id, phone_jid) and (bot_id, lid), so a LID and a phone
JID each map to one person and concurrent learners cannot record two pairs for either."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from services.common.errors import InvalidInputError
from services.common.store._identity_types import IdentityPair, KnownIdentity, distinct_pairs
from services.common.store._mongo_base import MongoBase, _now, _only_duplicates


def _check_bot(bot_id: str) -> None:
    if not bot_id:
        raise InvalidInputError("the identity map needs a non-empty bot_id")


class MongoIdentities(MongoBase):
    async def learn_identities(
        self, bot_id: str, pairs: Sequence[IdentityPair]
    ) -> list[IdentityPair]:
        _check_bot(bot_id)
        wanted = distinct_pairs(pairs)
        if not wanted:
            return []
        now = _now()
        docs = [
            {
                "bot_id": bot_id,
                "phone_jid": p.phone_jid,
                "lid": p.lid,
                "settled": False,
                "learned_at": now,
            }
            for p in wanted
        ]
        refused: set[int] = set()
        try:
            await self._identities.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            # A duplicate key is a pair (or half of one) already known: first one wins.
            if not _only_duplicates(error):
                raise
            refused = {e["index"] for e in error.details.get("writeErrors", [])}
        return [pair for i, pair in enumerate(wanted) if i not in refused]

    async def identities(self, bot_id: str) -> list[KnownIdentity]:
        _check_bot(bot_id)
        cursor = self._identities.find({"bot_id": bot_id}).sort("phone_jid", ASCENDING)
        return [
            KnownIdentity(IdentityPair(doc["lid"], doc["phone_jid"]), bool(doc["settled"]))
            async for doc in cursor
        ]

    async def settle_identities(self, bot_id: str, phone_jids: Sequence[str]) -> int:
        _check_bot(bot_id)
        wanted = sorted(set(phone_jids))
        if not wanted:
            return 0
        result = await self._identities.update_many(
            {"bot_id": bot_id, "phone_jid": {"$in": wanted}, "settled": False},
            {"$set": {"settled": True}},
        )
        return result.modified_count
