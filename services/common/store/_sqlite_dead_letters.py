"""The SQLite adapter's webhook dead letters (`WebhookDeadLetterStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from services.common.store import _rules as rules
from services.common.store._dead_letters import (
    DEAD_LETTER_FIELDS,
    DEAD_LETTER_TIMES,
    WebhookDeadLetter,
    check_sequence,
)
from services.common.store._sqlite_base import SqliteBase
from services.common.store._types import from_millis, to_millis

_SELECT = ", ".join(DEAD_LETTER_FIELDS)


def _letter(row: Sequence[Any]) -> WebhookDeadLetter:
    values = dict(zip(DEAD_LETTER_FIELDS, row, strict=True))
    for name in DEAD_LETTER_TIMES:
        values[name] = from_millis(values[name])
    return WebhookDeadLetter(**values)


class SqliteDeadLetters(SqliteBase):
    async def put_webhook_dead_letter(self, letter: WebhookDeadLetter) -> bool:
        values = tuple(
            to_millis(getattr(letter, name)) if name in DEAD_LETTER_TIMES else getattr(letter, name)
            for name in DEAD_LETTER_FIELDS
        )
        marks = ", ".join("?" for _ in DEAD_LETTER_FIELDS)

        def put(conn: sqlite3.Connection) -> bool:
            existed = conn.execute(
                "SELECT 1 FROM webhook_dead_letters WHERE bot_id = ? AND sequence = ?",
                (letter.bot_id, letter.sequence),
            ).fetchone()
            conn.execute(
                f"INSERT OR REPLACE INTO webhook_dead_letters ({_SELECT}) VALUES ({marks})",
                values,
            )
            return existed is None

        created: bool = await self._write(put)
        return created

    async def webhook_dead_letters(
        self, bot_id: str, after_sequence: int = 0, limit: int = 100
    ) -> list[WebhookDeadLetter]:
        rules.check_page(limit)

        def read(conn: sqlite3.Connection) -> list[WebhookDeadLetter]:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM webhook_dead_letters WHERE bot_id = ? AND sequence > ?"
                " ORDER BY sequence LIMIT ?",
                (bot_id, after_sequence, limit),
            )
            return [_letter(row) for row in rows]

        letters: list[WebhookDeadLetter] = await self._read(read)
        return letters

    async def get_webhook_dead_letter(self, bot_id: str, sequence: int) -> WebhookDeadLetter | None:
        check_sequence(sequence)

        def read(conn: sqlite3.Connection) -> WebhookDeadLetter | None:
            row = conn.execute(
                f"SELECT {_SELECT} FROM webhook_dead_letters WHERE bot_id = ? AND sequence = ?",
                (bot_id, sequence),
            ).fetchone()
            return None if row is None else _letter(row)

        letter: WebhookDeadLetter | None = await self._read(read)
        return letter

    async def delete_webhook_dead_letter(self, bot_id: str, sequence: int) -> bool:
        check_sequence(sequence)

        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM webhook_dead_letters WHERE bot_id = ? AND sequence = ?",
                (bot_id, sequence),
            )
            return cursor.rowcount == 1

        deleted: bool = await self._write(delete)
        return deleted

    async def webhook_dead_letter_counts(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT bot_id, COUNT(*) FROM webhook_dead_letters GROUP BY bot_id")
            return {bot_id: int(count) for bot_id, count in rows}

        counts: dict[str, int] = await self._read(read)
        return counts
