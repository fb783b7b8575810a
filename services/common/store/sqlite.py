"""The embedded adapter: one SQLite file in WAL mode, shared safely by several processes.

Every call runs on the connection-owning thread of `SqliteRunner` (never on the event
loop). Claims are one `UPDATE … RETURNING` statement under the write lock, so two
claimers — threads or processes — can never take the same job.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from services.common.store import _rules as rules
from services.common.store._sqlite_auth import SqliteAuth
from services.common.store._sqlite_base import (
    SCHEMA_VERSION,
    _dumps,
    _get_document,
    _lease_ms,
    _now_ms,
    _put_document,
    _without_id,
)
from services.common.store._sqlite_dead_letters import SqliteDeadLetters
from services.common.store._sqlite_identities import SqliteIdentities
from services.common.store._sqlite_jobs import SqliteJobs
from services.common.store._sqlite_media_usage import SqliteMediaUsage
from services.common.store._sqlite_messages import SqliteMessages
from services.common.store._sqlite_outbox import SqliteOutbox
from services.common.store._sqlite_tokens import SqliteApiTokens
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    DEFINITIONS_DOCUMENT_ID,
    BotConfig,
    listed_bots,
)

# Re-exported: tests read the schema version from here.
__all__ = ["SCHEMA_VERSION", "SqliteStore"]


class SqliteStore(
    SqliteJobs,
    SqliteMessages,
    SqliteAuth,
    SqliteDeadLetters,
    SqliteApiTokens,
    SqliteIdentities,
    SqliteOutbox,
    SqliteMediaUsage,
):
    """The `Store` on one SQLite file (WAL, synchronous NORMAL or FULL), split as the
    aggregates are: bot configurations, the registry of active bots, the definitions
    document and leases here; messages and cursors in `SqliteMessages`; media jobs in
    `SqliteJobs`; webhook dead letters in `SqliteDeadLetters`; per-bot API tokens in
    `SqliteApiTokens`; the identity map in `SqliteIdentities`; the outgoing-message
    outbox in `SqliteOutbox`; schema, migrations and plumbing in `SqliteBase`."""

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

    async def configured_bots(self) -> list[str]:
        rows = await self._read(
            lambda c: c.execute("SELECT id FROM bot_configurations ORDER BY id").fetchall()
        )
        return [row[0] for row in rows if row[0] not in rules.RESERVED_IDS]

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

    async def lease_holders(self, prefix: str) -> dict[str, str]:
        # substr, not LIKE: a prefix may hold % or _.
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, holder FROM leases WHERE substr(name, 1, ?) = ? AND expires_at > ?",
                (len(prefix), prefix, _now_ms()),
            ).fetchall()
        )
        return {str(name): str(holder) for name, holder in rows}
