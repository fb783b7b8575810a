"""The SQLite adapter's outgoing-message outbox (`OutboxStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from services.common.store import _rules as rules
from services.common.store._outbox_types import (
    NewOutgoing,
    OutboxStatus,
    OutgoingRecord,
    check_finish,
    check_key,
    check_new,
)
from services.common.store._sqlite_base import SqliteBase, _now_ms
from services.common.store._types import from_millis

_COLUMNS = (
    "bot_id, idempotency_key, correspondent_id, kind, request_hash, status,"
    " provider_message_id, reason, created_at, updated_at"
)


def _record(row: Sequence[Any], payload: bytes | None = None) -> OutgoingRecord:
    return OutgoingRecord(
        bot_id=row[0],
        idempotency_key=row[1],
        correspondent_id=row[2],
        kind=row[3],
        request_hash=row[4],
        status=OutboxStatus(row[5]),
        provider_message_id=row[6],
        reason=row[7],
        created_at=from_millis(row[8]),
        updated_at=from_millis(row[9]),
        payload=payload,
    )


class SqliteOutbox(SqliteBase):
    async def enqueue_outgoing(self, item: NewOutgoing) -> tuple[OutgoingRecord, bool]:
        check_new(item)

        def insert(conn: sqlite3.Connection) -> tuple[OutgoingRecord, bool]:
            now = _now_ms()
            inserted = conn.execute(
                "INSERT INTO outbox (bot_id, idempotency_key, correspondent_id, kind,"
                " request_hash, payload, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
                " ON CONFLICT (bot_id, idempotency_key) DO NOTHING",
                (
                    item.bot_id,
                    item.idempotency_key,
                    item.correspondent_id,
                    item.kind,
                    item.request_hash,
                    item.payload,
                    now,
                    now,
                ),
            ).rowcount
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE bot_id = ? AND idempotency_key = ?",
                (item.bot_id, item.idempotency_key),
            ).fetchone()
            return _record(row), inserted == 1

        result: tuple[OutgoingRecord, bool] = await self._write(insert)
        return result

    async def get_outgoing(
        self, bot_id: str, idempotency_key: str, with_payload: bool = False
    ) -> OutgoingRecord | None:
        check_key(bot_id, idempotency_key)
        extra = ", payload" if with_payload else ""

        def read(conn: sqlite3.Connection) -> OutgoingRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS}{extra} FROM outbox WHERE bot_id = ? AND idempotency_key = ?",
                (bot_id, idempotency_key),
            ).fetchone()
            if row is None:
                return None
            return _record(row, row[10] if with_payload else None)

        found: OutgoingRecord | None = await self._read(read)
        return found

    async def pending_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        rules.check_page(limit)

        def read(conn: sqlite3.Connection) -> list[OutgoingRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, payload FROM outbox WHERE bot_id = ? AND status = 'pending'"
                " ORDER BY seq LIMIT ?",
                (bot_id, limit),
            )
            return [_record(row, row[10]) for row in rows]

        found: list[OutgoingRecord] = await self._read(read)
        return found

    async def recent_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        rules.check_page(limit)

        def read(conn: sqlite3.Connection) -> list[OutgoingRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, payload FROM outbox WHERE bot_id = ?"
                " ORDER BY seq DESC LIMIT ?",
                (bot_id, limit),
            )
            return [_record(row, row[10]) for row in rows]

        found: list[OutgoingRecord] = await self._read(read)
        return found

    async def bots_with_pending_outgoing(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT bot_id FROM outbox WHERE status = 'pending' ORDER BY bot_id"
            )
            return [row[0] for row in rows]

        found: list[str] = await self._read(read)
        return found

    async def finish_outgoing(
        self,
        bot_id: str,
        idempotency_key: str,
        status: OutboxStatus,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        check_key(bot_id, idempotency_key)
        check_finish(status, reason)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, provider_message_id = ?, reason = ?,"
                " payload = NULL, updated_at = ?"
                " WHERE bot_id = ? AND idempotency_key = ? AND status = 'pending'",
                (str(status), provider_message_id, reason, _now_ms(), bot_id, idempotency_key),
            )
            return cursor.rowcount == 1

        changed: bool = await self._write(write)
        return changed
