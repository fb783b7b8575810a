"""Per-bot API tokens on SQLite: the `api_tokens` table (`_api_tokens.py` holds the rules)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from services.common.store._api_tokens import ApiToken, check_api_token, check_token_id
from services.common.store._sqlite_base import SqliteBase
from services.common.store._types import from_millis, to_millis

_COLUMNS = "token_id, bot_id, secret_sha256, created_at, label"


def _token(row: Sequence[Any]) -> ApiToken:
    token_id, bot_id, secret_sha256, created_at, label = row
    return ApiToken(token_id, bot_id, secret_sha256, from_millis(created_at), label)


class SqliteApiTokens(SqliteBase):
    async def create_api_token(self, token: ApiToken) -> bool:
        check_api_token(token)
        values = (
            token.token_id,
            token.bot_id,
            token.secret_sha256,
            to_millis(token.created_at, "created_at"),
            token.label,
        )

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"INSERT INTO api_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (token_id) DO NOTHING",
                values,
            )
            return cursor.rowcount == 1

        created: bool = await self._write(insert)
        return created

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        check_token_id(token_id)
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
        )
        return None if row is None else _token(row)

    async def list_api_tokens(self, bot_id: str) -> list[ApiToken]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE bot_id = ? ORDER BY created_at, token_id",
                (bot_id,),
            ).fetchall()
        )
        return [_token(row) for row in rows]

    async def revoke_api_token(self, bot_id: str, token_id: str) -> bool:
        check_token_id(token_id)
        deleted: bool = await self._write(
            lambda c: (
                c.execute(
                    "DELETE FROM api_tokens WHERE token_id = ? AND bot_id = ?", (token_id, bot_id)
                ).rowcount
                == 1
            )
        )
        return deleted
