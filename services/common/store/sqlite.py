"""The embedded adapter: one SQLite file in WAL mode, shared safely by several processes.

Every call runs on the connection-owning thread of `SqliteRunner` (never on the event
loop). Claims are one `UPDATE … RETURNING` statement under the write lock, so two
claimers — threads or processes — can never take the same job.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from services.common.errors import InvalidInputError, UnavailableError
from services.common.store import _rules as rules
from services.common.store._notify import DataVersionWatcher, Notifier
from services.common.store._sqlite_runner import SqliteRunner
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    ACTIVE_BOTS_FIELD,
    DEFINITIONS_DOCUMENT_ID,
    JOB_FIELDS,
    MESSAGE_FIELDS,
    MESSAGE_INPUT_FIELDS,
    NEW_JOB_FIELDS,
    AppendResult,
    BotConfig,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    PoolDepth,
    StoredMessage,
    from_millis,
    listed_bots,
    to_millis,
)

SCHEMA_VERSION = 4
# Cross-process wake-up latency of wait_for_jobs.
WATCH_INTERVAL_SECONDS = 0.002
_IN_CHUNK = 500  # stays far below SQLite's bound on host parameters

ACTIVE = JobCollection.ACTIVE.collection_name
HOLDING = JobCollection.HOLDING.collection_name
FAILED = JobCollection.FAILED.collection_name
_LIVE = (ACTIVE, HOLDING)
_COLLECTION_OF = {c.collection_name: c for c in JobCollection}

_JOB_COLUMNS_SQL = """
    media_processing_id TEXT NOT NULL UNIQUE,
    bot_id TEXT NOT NULL,
    provider_name TEXT NOT NULL,
    correspondent_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    source TEXT NOT NULL,
    originating_time INTEGER NOT NULL,
    provider_message_id TEXT NOT NULL,
    caption TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    media_kind TEXT NOT NULL,
    original_filename TEXT,
    file_size INTEGER NOT NULL,
    route TEXT NOT NULL,
    pool TEXT NOT NULL,
    has_staged_file INTEGER NOT NULL,
    group_id TEXT,
    group_name TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    fence INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_expires_at INTEGER,
    available_at INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    failed_at INTEGER,
    condition_detail TEXT,
    details TEXT
"""


def _tables() -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS bot_configurations (
            id TEXT PRIMARY KEY, document TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS queues (
            seq INTEGER PRIMARY KEY,
            bot_id TEXT NOT NULL, provider_name TEXT NOT NULL, correspondent_id TEXT NOT NULL,
            id INTEGER NOT NULL, content TEXT NOT NULL, sender TEXT NOT NULL,
            source TEXT NOT NULL, originating_time INTEGER NOT NULL,
            provider_message_id TEXT NOT NULL, message_size INTEGER NOT NULL,
            group_id TEXT, group_name TEXT, mime_type TEXT, original_filename TEXT,
            media_kind TEXT, sequence INTEGER, details TEXT,
            UNIQUE (bot_id, provider_name, correspondent_id, id))""",
        """CREATE INDEX IF NOT EXISTS queues_provider_message_id
            ON queues (bot_id, provider_message_id)""",
        """CREATE TABLE IF NOT EXISTS delivery_cursors (
            consumer TEXT NOT NULL, bot_id TEXT NOT NULL, sequence INTEGER NOT NULL,
            updated_at INTEGER NOT NULL, PRIMARY KEY (consumer, bot_id))""",
        """CREATE TABLE IF NOT EXISTS leases (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL)""",
    ] + [
        # seq (the rowid) breaks created_at ties: insertion order within a millisecond.
        f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY, {_JOB_COLUMNS_SQL})"
        for table in (ACTIVE, HOLDING, FAILED)
    ]


# Job columns added after schema version 1, with what fills them in existing rows:
# (column, definition, backfill statement or None). Applied by `_migrate` on open.
_ADDED_JOB_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    # Until version 2 the token was `attempts`; continuing from it keeps every token
    # issued before the upgrade refused once the job is claimed again.
    ("fence", "INTEGER NOT NULL DEFAULT 0", "UPDATE {table} SET fence = attempts"),
    ("condition_detail", "TEXT", None),
    ("details", "TEXT", None),
)


# Message columns added after schema version 1 (same form as _ADDED_JOB_COLUMNS).
_ADDED_MESSAGE_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    # Structured content of non-text messages; older rows are plain text or media.
    ("details", "TEXT", None),
)


def _indexes() -> list[str]:
    statements: list[str] = [
        # Delivery order per bot: replay scans it, the insert reads its top.
        "CREATE UNIQUE INDEX IF NOT EXISTS queues_sequence ON queues (bot_id, sequence)",
    ]
    for table in (ACTIVE, HOLDING, FAILED):
        statements += [
            f"CREATE INDEX IF NOT EXISTS {table}_bot ON {table} (bot_id, correspondent_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created_at)",
            # list_completed_jobs; the implicit trailing rowid (seq) orders equal times.
            f"CREATE INDEX IF NOT EXISTS {table}_completed ON {table} (status, updated_at)",
        ]
    for table in _LIVE:
        # The claim scans this index in created_at order per (status, pool) and stops at
        # the first row whose available_at (read from the index itself) has come.
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_claim"
            f" ON {table} (status, pool, created_at, seq, available_at)"
        )
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_lease ON {table} (pool, lease_expires_at)"
            " WHERE status = 'processing'"
        )
    statements += [
        f"CREATE INDEX IF NOT EXISTS {FAILED}_failed_at ON {FAILED} (failed_at)",
        f"CREATE INDEX IF NOT EXISTS {FAILED}_bot_failed_at ON {FAILED} (bot_id, failed_at)",
        f"CREATE INDEX IF NOT EXISTS {FAILED}_error ON {FAILED} (error)",
        f"PRAGMA user_version = {SCHEMA_VERSION}",
    ]
    return statements


_JOB_SELECT = ", ".join(JOB_FIELDS)
_MESSAGE_SELECT = ", ".join(MESSAGE_FIELDS)
_MESSAGE_INPUT = ", ".join(MESSAGE_INPUT_FIELDS)
# The next sequence of the row's bot is read inside the same write transaction as the
# insert, from the (bot_id, sequence) index: nothing in memory has to survive a restart.
_APPEND_SQL = (
    f"INSERT INTO queues ({_MESSAGE_INPUT}, sequence)"
    f" VALUES ({', '.join('?' for _ in MESSAGE_INPUT_FIELDS)},"
    " (SELECT COALESCE(MAX(sequence), 0) + 1 FROM queues WHERE bot_id = ?))"
    " ON CONFLICT (bot_id, provider_name, correspondent_id, id) DO NOTHING RETURNING sequence"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lease_ms(seconds: float, what: str) -> int:
    return max(1, round(rules.check_seconds(seconds, what) * 1000))


def _opt_dt(millis: int | None) -> datetime | None:
    return None if millis is None else from_millis(millis)


def _job(row: Sequence[Any]) -> MediaJob:
    values = dict(zip(JOB_FIELDS, row, strict=True))
    for name in ("originating_time", "available_at", "created_at", "updated_at"):
        values[name] = from_millis(values[name])
    for name in ("lease_expires_at", "failed_at"):
        values[name] = _opt_dt(values[name])
    values["has_staged_file"] = bool(values["has_staged_file"])
    values["status"] = JobStatus(values["status"])
    return MediaJob(**values)


def _message(row: Sequence[Any]) -> StoredMessage:
    values = dict(zip(MESSAGE_FIELDS, row, strict=True))
    values["originating_time"] = from_millis(values["originating_time"])
    return StoredMessage(**values)


def _copy_sql(source: str, target: str, where: str, overrides: dict[str, str]) -> str:
    """INSERT OR REPLACE into `target` the matching rows of `source`, some columns replaced.

    REPLACE makes a repeated move idempotent: the row lands once in the target.
    """
    columns = ", ".join(JOB_FIELDS)
    values = ", ".join(overrides.get(name, name) for name in JOB_FIELDS)
    return (
        f"INSERT OR REPLACE INTO {target} ({columns}) SELECT {values} FROM {source} WHERE {where}"
    )


def _claim_sql(pool_count: int) -> str:
    # One LIMIT 1 index scan per (pool, status) branch, then the oldest of those few rows:
    # the cost of a claim does not grow with the backlog.
    branches = []
    for index in range(pool_count):
        pool = f":pool{index}"
        branches.append(
            f"SELECT * FROM (SELECT seq, created_at FROM {ACTIVE} WHERE status = 'pending'"
            f" AND pool = {pool} AND available_at <= :now ORDER BY created_at, seq LIMIT 1)"
        )
        # Expired leases are found through their own partial index (earliest expiry
        # first), so many live claims cost nothing here.
        branches.append(
            f"SELECT * FROM (SELECT seq, created_at FROM {ACTIVE} WHERE status = 'processing'"
            f" AND pool = {pool} AND lease_expires_at < :now ORDER BY lease_expires_at LIMIT 1)"
        )
    candidates = " UNION ALL ".join(branches)
    return (
        f"UPDATE {ACTIVE} SET status = 'processing', claimed_by = :worker,"
        " lease_expires_at = :lease, attempts = attempts + 1, fence = fence + 1,"
        " updated_at = :now"
        f" WHERE seq = (SELECT seq FROM ({candidates}) ORDER BY created_at, seq LIMIT 1)"
        f" RETURNING {_JOB_SELECT}"
    )


class SqliteStore:
    """The `Store` on one SQLite file (WAL, synchronous NORMAL or FULL)."""

    def __init__(self, path: Path, runner: SqliteRunner) -> None:
        self._path = path
        self._runner = runner
        self._notifier: Notifier | None = None
        self._watcher: DataVersionWatcher | None = None
        self._claim_sql: dict[int, str] = {}
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5_000,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> SqliteStore:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnavailableError(
                f"cannot create the directory of SQLITE_PATH={path}: {exc}; set SQLITE_PATH"
                " to a writable location"
            ) from exc
        runner = SqliteRunner(path, synchronous, busy_timeout_ms)
        store = cls(path, runner)
        try:
            await runner.call(_enable_wal, write=False)
            await runner.call(_create_schema, write=True)
        except BaseException:
            await runner.close()
            raise
        return store

    @property
    def path(self) -> Path:
        return self._path

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            await self._watcher.close()
        await self._runner.close()

    async def _read(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._runner.call(operation, write=False)

    async def _write(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._runner.call(operation, write=True)

    def _wake(self) -> None:
        if self._notifier is not None:
            self._notifier.wake()

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
            found: set[str] = set()
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                rows = conn.execute(
                    "SELECT DISTINCT provider_message_id FROM queues"
                    f" WHERE bot_id = ? AND provider_message_id IN ({marks})",
                    (bot_id, *chunk),
                )
                found.update(row[0] for row in rows)
            return found

        found: set[str] = await self._read(read)
        return found

    # --- media jobs ----------------------------------------------------------------

    async def create_job(self, job: NewMediaJob) -> bool:
        values = {name: getattr(job, name) for name in NEW_JOB_FIELDS}
        values["originating_time"] = to_millis(job.originating_time)
        values["has_staged_file"] = int(job.has_staged_file)
        columns = ", ".join(NEW_JOB_FIELDS)
        marks = ", ".join(f":{name}" for name in NEW_JOB_FIELDS)
        sql = (
            f"INSERT INTO {ACTIVE} ({columns}, status, attempts, fence, available_at,"
            f" created_at, updated_at) VALUES ({marks}, 'pending', 0, 0, :now, :now, :now)"
            " ON CONFLICT (media_processing_id) DO NOTHING"
        )

        def create(conn: sqlite3.Connection) -> bool:
            for table in (HOLDING, FAILED):
                if conn.execute(
                    f"SELECT 1 FROM {table} WHERE media_processing_id = ?",
                    (job.media_processing_id,),
                ).fetchone():
                    return False
            return conn.execute(sql, {**values, "now": _now_ms()}).rowcount == 1

        created: bool = await self._write(create)
        if created:
            self._wake()
        return created

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None:
        def read(conn: sqlite3.Connection) -> tuple[JobCollection, MediaJob] | None:
            for table in (ACTIVE, HOLDING, FAILED):
                row = conn.execute(
                    f"SELECT {_JOB_SELECT} FROM {table} WHERE media_processing_id = ?",
                    (media_processing_id,),
                ).fetchone()
                if row is not None:
                    return _COLLECTION_OF[table], _job(row)
            return None

        found: tuple[JobCollection, MediaJob] | None = await self._read(read)
        return found

    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        unique_pools = rules.claim_pools(pools)
        lease_ms = _lease_ms(lease_seconds, "lease_seconds")
        sql = self._claim_sql.get(len(unique_pools))
        if sql is None:
            sql = self._claim_sql[len(unique_pools)] = _claim_sql(len(unique_pools))
        params: dict[str, Any] = {f"pool{i}": pool for i, pool in enumerate(unique_pools)}
        params["worker"] = worker_id

        def claim(conn: sqlite3.Connection) -> ClaimedJob | None:
            now = _now_ms()
            row = conn.execute(sql, {**params, "now": now, "lease": now + lease_ms}).fetchone()
            if row is None:
                return None
            job = _job(row)
            return ClaimedJob(job=job, token=job.fence)

        claimed: ClaimedJob | None = await self._write(claim)
        return claimed

    async def renew_lease(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        lease_ms = _lease_ms(lease_seconds, "lease_seconds")

        def renew(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET lease_expires_at = ?, updated_at = ?"
                    " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                    (now + lease_ms, now, media_processing_id, token),
                )
                is not None
            )

        renewed: bool = await self._write(renew)
        return renewed

    async def complete_job(
        self, media_processing_id: str, token: int, result: str, error: str | None = None
    ) -> JobCollection | None:
        def complete(conn: sqlite3.Connection) -> JobCollection | None:
            return _first_table(
                conn,
                "UPDATE {table} SET status = 'completed', result = ?, error = ?, updated_at = ?"
                " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                (result, error, _now_ms(), media_processing_id, token),
            )

        where: JobCollection | None = await self._write(complete)
        return where

    async def release_job(
        self, media_processing_id: str, token: int, error: str, retry_at: datetime
    ) -> bool:
        retry_ms = to_millis(retry_at, "retry_at")

        def release(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET status = 'pending', error = ?, available_at = ?,"
                    " claimed_by = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                    (error, retry_ms, _now_ms(), media_processing_id, token),
                )
                is not None
            )

        released: bool = await self._write(release)
        if released:
            self._wake()
        return released

    async def resolve_stale_job(self, media_processing_id: str, result: str, error: str) -> bool:
        def resolve(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET status = 'completed', result = ?, error = ?,"
                    " fence = fence + 1, claimed_by = NULL, lease_expires_at = NULL,"
                    " updated_at = ? WHERE media_processing_id = ? AND status != 'completed'",
                    (result, error, _now_ms(), media_processing_id),
                )
                is not None
            )

        resolved: bool = await self._write(resolve)
        return resolved

    async def delete_job(self, media_processing_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "DELETE FROM {table} WHERE media_processing_id = ?",
                    (media_processing_id,),
                )
                is not None
            )

        deleted: bool = await self._write(delete)
        return deleted

    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool:
        where = "media_processing_id = :id"
        if token is not None:
            where += " AND status = 'processing' AND fence = :token"

        def fail(conn: sqlite3.Connection) -> bool:
            params = {"id": media_processing_id, "token": token, "error": error, "now": _now_ms()}
            for table in _LIVE:
                sql = _copy_sql(
                    table,
                    FAILED,
                    where,
                    {"error": ":error", "failed_at": ":now", "updated_at": ":now"},
                )
                if conn.execute(sql, params).rowcount:
                    conn.execute(
                        f"DELETE FROM {table} WHERE media_processing_id = ?",
                        (media_processing_id,),
                    )
                    return True
            return False

        failed: bool = await self._write(fail)
        return failed

    async def move_bot_jobs(self, bot_id: str, source: JobCollection, target: JobCollection) -> int:
        rules.check_bot_move(source, target)
        copy = _copy_sql(source.collection_name, target.collection_name, "bot_id = ?", {})

        def move(conn: sqlite3.Connection) -> int:
            # One transaction: a concurrent complete_job lands either before (and is
            # copied) or after (and finds the job in the target).
            conn.execute(copy, (bot_id,))
            return conn.execute(
                f"DELETE FROM {source.collection_name} WHERE bot_id = ?", (bot_id,)
            ).rowcount

        moved: int = await self._write(move)
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def list_jobs(self, bot_id: str, collection: JobCollection) -> list[MediaJob]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM {collection.collection_name}"
            " WHERE bot_id = ? ORDER BY created_at, seq"
        )
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, (bot_id,))]
        )
        return jobs

    async def list_failed_jobs(self, bot_id: str | None = None, limit: int = 100) -> list[MediaJob]:
        rules.check_page(limit)
        if bot_id is None:
            sql = f"SELECT {_JOB_SELECT} FROM {FAILED} ORDER BY failed_at DESC, seq DESC LIMIT ?"
            params: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {_JOB_SELECT} FROM {FAILED} WHERE bot_id = ?"
                " ORDER BY failed_at DESC, seq DESC LIMIT ?"
            )
            params = (bot_id, limit)
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, params)]
        )
        return jobs

    async def requeue_failed_job(self, media_processing_id: str, target: JobCollection) -> bool:
        rules.check_requeue_target(target)
        # Every reset field is a bound parameter of the same name.
        copy = _copy_sql(
            FAILED,
            target.collection_name,
            "media_processing_id = :media_processing_id",
            {name: f":{name}" for name in rules.requeue_reset(0)},
        )

        def requeue(conn: sqlite3.Connection) -> bool:
            params = {**rules.requeue_reset(_now_ms()), "media_processing_id": media_processing_id}
            if not conn.execute(copy, params).rowcount:
                return False
            conn.execute(
                f"DELETE FROM {FAILED} WHERE media_processing_id = ?", (media_processing_id,)
            )
            return True

        requeued: bool = await self._write(requeue)
        if requeued and target is JobCollection.ACTIVE:
            self._wake()
        return requeued

    async def pool_depths(self) -> dict[str, PoolDepth]:
        def read(conn: sqlite3.Connection) -> dict[str, PoolDepth]:
            counts: dict[str, list[Any]] = {}
            for pool, status, count, oldest in conn.execute(
                f"SELECT pool, status, COUNT(*), MIN(created_at) FROM {ACTIVE}"
                " WHERE status IN ('pending', 'processing') GROUP BY pool, status"
            ):
                entry = counts.setdefault(pool, [0, 0, None])
                if status == JobStatus.PENDING:
                    entry[0], entry[2] = count, from_millis(oldest)
                else:
                    entry[1] = count
            return {pool: PoolDepth(e[0], e[1], e[2]) for pool, e in counts.items()}

        depths: dict[str, PoolDepth] = await self._read(read)
        return depths

    async def jobs_older_than(
        self,
        collection: JobCollection,
        created_before: datetime,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[MediaJob]:
        bound = to_millis(created_before, "created_before")
        rules.check_page(limit, offset)
        sql = (
            f"SELECT {_JOB_SELECT} FROM {collection.collection_name}"
            " WHERE created_at < ? ORDER BY created_at, seq LIMIT ? OFFSET ?"
        )
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, (bound, limit, offset))]
        )
        return jobs

    async def list_completed_jobs(
        self,
        collection: JobCollection,
        updated_before: datetime,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MediaJob]:
        bound = to_millis(updated_before, "updated_before")
        rules.check_page(limit, offset)
        sql = (
            f"SELECT {_JOB_SELECT} FROM {collection.collection_name}"
            " WHERE status = 'completed' AND updated_at < ?"
            " ORDER BY updated_at, seq LIMIT ? OFFSET ?"
        )
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, (bound, limit, offset))]
        )
        return jobs

    async def pending_routes(self) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute(
                f"SELECT route, pool FROM {ACTIVE} WHERE status = 'pending'"
                f" UNION SELECT route, pool FROM {HOLDING} WHERE status = 'pending'"
            )
            return dict(rows.fetchall())

        routes: dict[str, str] = await self._read(read)
        return routes

    async def set_pool_for_route(self, route: str, pool: str) -> int:
        rules.check_route_pool(pool)

        def update(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            return sum(
                conn.execute(
                    f"UPDATE {table} SET pool = ?, updated_at = ?"
                    " WHERE status = 'pending' AND route = ? AND pool != ?",
                    (pool, now, route, pool),
                ).rowcount
                for table in _LIVE
            )

        changed: int = await self._write(update)
        if changed:
            self._wake()
        return changed

    async def existing_job_ids(self, media_processing_ids: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(media_processing_ids))

        def read(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                for table in (ACTIVE, HOLDING, FAILED):
                    rows = conn.execute(
                        f"SELECT media_processing_id FROM {table}"
                        f" WHERE media_processing_id IN ({marks})",
                        chunk,
                    )
                    found.update(row[0] for row in rows)
            return found

        found: set[str] = await self._read(read)
        return found

    async def wait_for_jobs(self, timeout: float) -> None:  # noqa: ASYNC109 (agreed name)
        if self._closed:
            raise UnavailableError("the SQLite store is closed")
        if self._notifier is None:
            self._notifier = Notifier()
        if self._watcher is None:
            self._watcher = DataVersionWatcher(
                self._path, asyncio.get_running_loop(), self._notifier, WATCH_INTERVAL_SECONDS
            )
        with self._watcher.watching():
            await self._notifier.wait(timeout)

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


# --- helpers run on the runner thread -----------------------------------------------


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Outside a transaction; persistent in the file, so later opens find it set.
    conn.execute("COMMIT")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise UnavailableError(f"SQLite refused WAL mode (journal_mode={mode})")
    conn.execute("BEGIN")


def _create_schema(conn: sqlite3.Connection) -> None:
    # Runs under the write lock, so two processes opening an old file at once migrate it
    # once: the second finds the columns already there.
    for statement in _tables():
        conn.execute(statement)
    _migrate(conn)
    for statement in _indexes():
        conn.execute(statement)


def _migrate(conn: sqlite3.Connection) -> None:
    """Adds the columns a file made by an older schema lacks (idempotent)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(queues)")}
    if "sequence" not in present:
        conn.execute("ALTER TABLE queues ADD COLUMN sequence INTEGER")
        # Rows of an older file get their sequences in insertion order (the rowid), so
        # a consumer starting from 0 sees them in the order they were persisted.
        conn.execute(
            "UPDATE queues SET sequence = numbered.n FROM (SELECT seq, ROW_NUMBER() OVER"
            " (PARTITION BY bot_id ORDER BY seq) AS n FROM queues) AS numbered"
            " WHERE queues.seq = numbered.seq"
        )
    added = [(table, _ADDED_JOB_COLUMNS) for table in (ACTIVE, HOLDING, FAILED)]
    added.append(("queues", _ADDED_MESSAGE_COLUMNS))
    for table, columns in added:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, definition, backfill in columns:
            if column in present:
                continue
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            if backfill is not None:
                conn.execute(backfill.format(table=table))


def _first_table(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> JobCollection | None:
    """Run `sql` on ACTIVE, then HOLDING; the collection where it changed a row."""
    for table in _LIVE:
        if conn.execute(sql.format(table=table), params).rowcount:
            return _COLLECTION_OF[table]
    return None


def _get_document(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT document FROM bot_configurations WHERE id = ?", (key,)).fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = json.loads(row[0])
    return doc


def _put_document(conn: sqlite3.Connection, key: str, text: str) -> None:
    conn.execute(
        "INSERT INTO bot_configurations (id, document) VALUES (?, ?)"
        " ON CONFLICT (id) DO UPDATE SET document = excluded.document",
        (key, text),
    )


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key != "_id"}


def _dumps(doc: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(doc, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be JSON-serialisable: {exc}") from exc
