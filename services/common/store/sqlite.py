"""The embedded adapter: one SQLite file in WAL mode, shared safely by several processes.

Every call runs on the connection-owning thread of `SqliteRunner` (never on the event
loop). Claims are one `UPDATE … RETURNING` statement under the write lock, so two
claimers — threads or processes — can never take the same job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from services.common.store import _rules as rules
from services.common.store._message_types import (
    MESSAGE_INPUT_FIELDS,
    AppendResult,
    StoredMessage,
)
from services.common.store._sqlite_base import (
    _APPEND_SQL,
    _MESSAGE_SELECT,
    SCHEMA_VERSION,
    _dumps,
    _found_among,
    _get_document,
    _lease_ms,
    _message,
    _now_ms,
    _put_document,
    _without_id,
)
from services.common.store._sqlite_jobs import SqliteJobs
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    DEFINITIONS_DOCUMENT_ID,
    BotConfig,
    listed_bots,
    to_millis,
)

# Re-exported: tests read the schema version from here.
__all__ = ["SCHEMA_VERSION", "SqliteStore"]


class SqliteStore(SqliteJobs):
    """The `Store` on one SQLite file (WAL, synchronous NORMAL or FULL): bot
    configurations, the registry of active bots, messages, delivery cursors and leases
    here; media jobs in `SqliteJobs`; the plumbing in `SqliteBase`."""

    # --- bot configuration ---------------------------------------------------------

    async def get_bot_config(self, bot_id: str) -> BotConfig | None:
        if bot_id in rules.RESERVED_IDS:
            return None  # shares the collection, but is not a bot
        doc = await self._read(lambda c: _get_document(c, bot_id))
        return None if doc is None else BotConfig.from_document({**doc, "bot_id": bot_id})

    async def put_bot_config(self, config: BotConfig) -> None:
        rules.check_writable_bot_id(config.bot_id)
        text = _dumps(config.to_document(), "bot configuration")
        await self._write(lambda c: _put_document(c, config.bot_id, text))

    async def get_processor_definitions(self) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self._read(
            lambda c: _get_document(c, DEFINITIONS_DOCUMENT_ID)
        )
        return doc

    async def put_processor_definitions(self, doc: dict[str, Any]) -> None:
        text = _dumps(_without_id(doc), "processor definitions")
        await self._write(lambda c: _put_document(c, DEFINITIONS_DOCUMENT_ID, text))

    async def seed_processor_definitions(self, doc: dict[str, Any]) -> bool:
        text = _dumps(_without_id(doc), "processor definitions")

        def seed(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO bot_configurations (id, document) VALUES (?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (DEFINITIONS_DOCUMENT_ID, text),
            )
            return cursor.rowcount == 1

        inserted: bool = await self._write(seed)
        return inserted

    # --- the registry of active bots ------------------------------------------------

    async def set_bot_active(self, bot_id: str, active: bool) -> bool:
        rules.check_active_bot_id(bot_id)

        # Read and write in one BEGIN IMMEDIATE transaction: no other process can change
        # the document in between.
        def update(conn: sqlite3.Connection) -> bool:
            doc = _get_document(conn, ACTIVE_BOTS_DOCUMENT_ID) or {}
            current = set(listed_bots(doc.get(ACTIVE_BOTS_FIELD)))
            wanted = current | {bot_id} if active else current - {bot_id}
            if wanted == current:
                return False
            doc[ACTIVE_BOTS_FIELD] = sorted(wanted)
            _put_document(conn, ACTIVE_BOTS_DOCUMENT_ID, _dumps(doc, "active bots"))
            return True

        changed: bool = await self._write(update)
        return changed

    async def active_bots(self) -> list[str]:
        doc = await self._read(lambda c: _get_document(c, ACTIVE_BOTS_DOCUMENT_ID))
        return [] if doc is None else listed_bots(doc.get(ACTIVE_BOTS_FIELD))

    # --- messages ------------------------------------------------------------------

    async def insert_messages(self, messages: Sequence[StoredMessage]) -> int:
        return (await self.append_messages(messages)).inserted

    async def append_messages(self, messages: Sequence[StoredMessage]) -> AppendResult:
        rows = [
            (
                tuple(
                    to_millis(m.originating_time)
                    if name == "originating_time"
                    else getattr(m, name)
                    for name in MESSAGE_INPUT_FIELDS
                ),
                (m.bot_id, m.provider_name, m.correspondent_id, m.id),
            )
            for m in messages
        ]
        if not rows:
            return AppendResult([], 0)

        def insert(conn: sqlite3.Connection) -> AppendResult:
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

    async def recent_messages(
        self,
        bot_id: str,
        provider_name: str,
        per_correspondent: int,
        since: datetime | None = None,
    ) -> dict[str, list[StoredMessage]]:
        rules.check_per_correspondent(per_correspondent)
        if per_correspondent == 0:
            return {}
        params: list[Any] = [bot_id, provider_name]
        where = "bot_id = ? AND provider_name = ?"
        if since is not None:
            where += " AND originating_time >= ?"
            params.append(to_millis(since, "since"))
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

    # --- leases --------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        ttl_ms = _lease_ms(ttl_seconds, "ttl_seconds")
        rules.check_lease_names(name, holder)

        def acquire(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            row = conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at"
                " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
                " RETURNING holder",
                (name, holder, now + ttl_ms, now),
            ).fetchone()
            return row is not None

        acquired: bool = await self._write(acquire)
        return acquired

    async def release_lease(self, name: str, holder: str) -> None:
        await self._write(
            lambda c: c.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
        )
