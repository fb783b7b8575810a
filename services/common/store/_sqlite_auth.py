"""Baileys auth state on SQLite: one row per (bot, key type, key id); a set of changes is
one write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from services.common.store import _rules as rules
from services.common.store._sqlite_base import SqliteBase

# SQLite's default limit on host parameters is 999 (32766 since 3.32); stay well below.
_CHUNK = 500


class SqliteAuth(SqliteBase):
    async def get_auth_values(
        self, bot_id: str, kind: str, key_ids: Collection[str]
    ) -> dict[str, str]:
        rules.check_auth_keys(bot_id, kind, key_ids)
        ids = list(dict.fromkeys(key_ids))

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT key_id, value FROM whatsapp_auth"
                    f" WHERE bot_id = ? AND kind = ? AND key_id IN ({marks})",
                    (bot_id, kind, *chunk),
                ).fetchall()
                found.update({str(k): str(v) for k, v in rows})
            return found

        values: dict[str, str] = await self._read(read)
        return values

    async def set_auth_values(self, bot_id: str, changes: dict[str, dict[str, str | None]]) -> None:
        rules.check_auth_changes(bot_id, changes)

        def write(conn: sqlite3.Connection) -> None:
            for kind, values in changes.items():
                conn.executemany(
                    "DELETE FROM whatsapp_auth WHERE bot_id = ? AND kind = ? AND key_id = ?",
                    [(bot_id, kind, k) for k, v in values.items() if v is None],
                )
                conn.executemany(
                    "INSERT INTO whatsapp_auth (bot_id, kind, key_id, value) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (bot_id, kind, key_id) DO UPDATE SET value = excluded.value",
                    [(bot_id, kind, k, v) for k, v in values.items() if v is not None],
                )

        await self._write(write)

    async def forget_auth(self, bot_id: str) -> int:
        rules.check_auth_keys(bot_id, "creds", ())
        deleted: int = await self._write(
            lambda c: c.execute("DELETE FROM whatsapp_auth WHERE bot_id = ?", (bot_id,)).rowcount
        )
        return deleted
