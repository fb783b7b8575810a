"""Per-bot API tokens on MongoDB: the `api_tokens` collection, `_id` the token id
(`_api_tokens.py` holds the rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.common.store._api_tokens import ApiToken, check_api_token, check_token_id
from services.common.store._mongo_base import MongoBase
from services.common.store._types import truncate_to_millis


def _token(doc: Mapping[str, Any]) -> ApiToken:
    return ApiToken(
        token_id=doc["_id"],
        bot_id=doc["bot_id"],
        secret_sha256=doc["secret_sha256"],
        created_at=doc["created_at"],
        label=doc.get("label", ""),
    )


class MongoApiTokens(MongoBase):
    async def create_api_token(self, token: ApiToken) -> bool:
        check_api_token(token)
        try:
            await self._api_tokens.insert_one(
                {
                    "_id": token.token_id,
                    "bot_id": token.bot_id,
                    "secret_sha256": token.secret_sha256,
                    "created_at": truncate_to_millis(token.created_at),
                    "label": token.label,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        check_token_id(token_id)
        doc = await self._api_tokens.find_one({"_id": token_id})
        return None if doc is None else _token(doc)

    async def list_api_tokens(self, bot_id: str) -> list[ApiToken]:
        cursor = self._api_tokens.find({"bot_id": bot_id}).sort([("created_at", 1), ("_id", 1)])
        return [_token(doc) async for doc in cursor]

    async def revoke_api_token(self, bot_id: str, token_id: str) -> bool:
        check_token_id(token_id)
        deleted = await self._api_tokens.delete_one({"_id": token_id, "bot_id": bot_id})
        return deleted.deleted_count == 1
