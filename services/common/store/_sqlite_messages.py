"""The SQLite adapter's messages (`MessageStore`): persisted messages with their per-bot
delivery sequences, history reads, and named consumers' cursors."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from services.common.store import _rules as rules
from services.common.store._adapter_base import MessagesBase
from services.common.store._message_types import (
    MESSAGE_INPUT_FIELDS,
    AppendResult,
    StoredMessage,
)
from services.common.store._sqlite_base import (
    _APPEND_NUMBERED_SQL,
    _APPEND_SQL,
    _MESSAGE_SELECT,
    SqliteBase,
    _found_among,
    _message,
    _now_ms,
)
from services.common.store._types import (
    to_millis,
)

# A row's values in one attrgetter call: a generator of getattr per field cost a few
# µs per message, and every text message is appended.
_input_values = attrgetter(*MESSAGE_INPUT_FIELDS)
_TIME_AT = MESSAGE_INPUT_FIELDS.index("originating_time")


def _row_values(m: StoredMessage) -> tuple[Any, ...]:
    values: tuple[Any, ...] = _input_values(m)
    return (*values[:_TIME_AT], to_millis(m.originating_time), *values[_TIME_AT + 1 :])


class SqliteMessages(SqliteBase, MessagesBase):
    async def append_messages(self, messages: Sequence[StoredMessage]) -> AppendResult:
        rows = [
            (_row_values(m), (m.bot_id, m.provider_name, m.correspondent_id, m.id))
            for m in messages
        ]
        if not rows:
            return AppendResult([], 0)

        def insert(conn: sqlite3.Connection) -> AppendResult:
            if len(rows) > 1:
                all_new = _append_all_new(conn, rows)
                if all_new is not None:
                    return all_new
            sequences: list[int] = []
            inserted = 0
            for values, key in rows:
                row = conn.execute(_APPEND_SQL, (*values, key[0])).fetchone()
                if row is not None:
                    inserted += 1
                else:
                    row = conn.execute(
                        "SELECT sequence FROM queues WHERE bot_id = ? AND provider_name = ?"
                        " AND correspondent_id = ? AND id = ?",
                        key,
                    ).fetchone()
                sequences.append(int(row[0]))
            return AppendResult(sequences, inserted)

        result: AppendResult = await self._write(insert)
        return result

    async def messages_after(
        self, bot_id: str, after_sequence: int, limit: int = 500
    ) -> list[StoredMessage]:
        rules.check_page(limit)

        def read(conn: sqlite3.Connection) -> list[StoredMessage]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_SELECT} FROM queues WHERE bot_id = ? AND sequence > ?"
                " ORDER BY sequence LIMIT ?",
                (bot_id, after_sequence, limit),
            )
            return [_message(row) for row in rows]

        found: list[StoredMessage] = await self._read(read)
        return found

    async def max_sequence(self, bot_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(MAX(sequence), 0) FROM queues WHERE bot_id = ?", (bot_id,)
            ).fetchone()
            return int(row[0])

        top: int = await self._read(read)
        return top

    # --- delivery cursors of named consumers ------------------------------------------

    async def delivery_cursors(self, consumer: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT bot_id, sequence FROM delivery_cursors WHERE consumer = ?", (consumer,)
            )
            return {bot_id: int(sequence) for bot_id, sequence in rows}

        cursors: dict[str, int] = await self._read(read)
        return cursors

    async def advance_cursor(self, consumer: str, bot_id: str, sequence: int) -> bool:
        rules.check_consumer(consumer, bot_id, sequence)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO delivery_cursors (consumer, bot_id, sequence, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (consumer, bot_id) DO UPDATE"
                " SET sequence = excluded.sequence, updated_at = excluded.updated_at"
                " WHERE excluded.sequence > delivery_cursors.sequence",
                (consumer, bot_id, sequence, _now_ms()),
            )
            return cursor.rowcount == 1

        moved: bool = await self._write(write)
        return moved

    async def max_message_ids(self, bot_id: str, provider_name: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT correspondent_id, MAX(id) FROM queues"
                " WHERE bot_id = ? AND provider_name = ? GROUP BY correspondent_id",
                (bot_id, provider_name),
            )
            return {correspondent: int(top) for correspondent, top in rows}

        result: dict[str, int] = await self._read(read)
        return result

    async def message_history(
        self, bot_id: str, provider_name: str, correspondent_id: str, limit: int = 100
    ) -> list[StoredMessage]:
        rules.check_page(limit)

        def read(conn: sqlite3.Connection) -> list[StoredMessage]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_SELECT} FROM queues WHERE bot_id = ? AND provider_name = ?"
                " AND correspondent_id = ? ORDER BY id DESC LIMIT ?",
                (bot_id, provider_name, correspondent_id, limit),
            ).fetchall()
            return [_message(row) for row in reversed(rows)]

        history: list[StoredMessage] = await self._read(read)
        return history

    async def _recent_messages(
        self, bot_id: str, provider_name: str, per_correspondent: int, since: datetime | None
    ) -> dict[str, list[StoredMessage]]:
        params: list[Any] = [bot_id, provider_name]
        where = "bot_id = ? AND provider_name = ?"
        if since is not None:
            where += " AND originating_time >= ?"
            params.append(to_millis(since))
        # The unique index (bot_id, provider_name, correspondent_id, id) delivers the rows
        # already partitioned; only each partition's order is reversed. The final order
        # is set here rather than by a second SQL sort.
        sql = (
            f"SELECT {_MESSAGE_SELECT} FROM (SELECT {_MESSAGE_SELECT}, ROW_NUMBER() OVER"
            " (PARTITION BY correspondent_id ORDER BY id DESC) AS newest"
            f" FROM queues WHERE {where}) WHERE newest <= ?"
        )
        params.append(per_correspondent)

        def read(conn: sqlite3.Connection) -> dict[str, list[StoredMessage]]:
            recent: dict[str, list[StoredMessage]] = {}
            for row in conn.execute(sql, params):
                message = _message(row)
                recent.setdefault(message.correspondent_id, []).append(message)
            for messages in recent.values():
                messages.sort(key=lambda m: m.id)
            return recent

        found: dict[str, list[StoredMessage]] = await self._read(read)
        return found

    async def persisted_provider_ids(
        self, bot_id: str, provider_message_ids: Collection[str]
    ) -> set[str]:
        wanted = list(dict.fromkeys(provider_message_ids))

        def read(conn: sqlite3.Connection) -> set[str]:
            return _found_among(
                conn,
                "SELECT DISTINCT provider_message_id FROM queues"
                " WHERE bot_id = ? AND provider_message_id IN ({marks})",
                wanted,
                (bot_id,),
            )

        found: set[str] = await self._read(read)
        return found


def _append_all_new(
    conn: sqlite3.Connection, rows: list[tuple[tuple[Any, ...], tuple[str, str, str, int]]]
) -> AppendResult | None:
    """The common batch, where every message is new, in one executemany: each bot's
    top sequence read once and numbered on from it, as the row-by-row insert would
    (the write lock is held, so nothing else numbers in between). None, with nothing
    written, when any row was already stored: the row-by-row insert then answers that
    row with its existing sequence."""
    tops: dict[str, int] = {}
    numbered: list[tuple[Any, ...]] = []
    sequences: list[int] = []
    for values, key in rows:
        bot_id = key[0]
        top = tops.get(bot_id)
        if top is None:
            top = int(
                conn.execute(
                    "SELECT COALESCE(MAX(sequence), 0) FROM queues WHERE bot_id = ?", (bot_id,)
                ).fetchone()[0]
            )
        top += 1
        tops[bot_id] = top
        numbered.append((*values, top))
        sequences.append(top)
    conn.execute("SAVEPOINT append_all_new")
    inserted = conn.executemany(_APPEND_NUMBERED_SQL, numbered).rowcount
    if inserted != len(rows):
        conn.execute("ROLLBACK TO append_all_new")
        conn.execute("RELEASE append_all_new")
        return None
    conn.execute("RELEASE append_all_new")
    return AppendResult(sequences, inserted)
