"""The per-bot staged-byte counter on SQLite: the `media_usage` table."""

from __future__ import annotations

import sqlite3

from services.common.store._media_usage import check_usage_change
from services.common.store._sqlite_base import SqliteBase


class SqliteMediaUsage(SqliteBase):
    async def add_media_usage(self, bot_id: str, delta: int) -> int:
        check_usage_change(bot_id, delta)

        def add(conn: sqlite3.Connection) -> int:
            # Clamped at 0 in the same statement (see _mongo_media_usage.py for why).
            row = conn.execute(
                "INSERT INTO media_usage (bot_id, staged_bytes) VALUES (:bot, MAX(0, :delta))"
                " ON CONFLICT (bot_id) DO UPDATE SET staged_bytes = MAX(0, staged_bytes + :delta)"
                " RETURNING staged_bytes",
                {"bot": bot_id, "delta": delta},
            ).fetchone()
            return int(row[0])

        used: int = await self._write(add)
        return used

    async def media_usage(self, bot_id: str) -> int:
        row = await self._read(
            lambda c: c.execute(
                "SELECT staged_bytes FROM media_usage WHERE bot_id = ?", (bot_id,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])
