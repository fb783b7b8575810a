"""The SQLite adapter's schema, migrations, SQL helpers and connection plumbing
(`SqliteBase`); `sqlite.py` and `_sqlite_jobs.py` build `SqliteStore` on it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

from services.common.errors import InvalidInputError, UnavailableError
from services.common.store import _rules as rules
from services.common.store._adapter_base import AdapterBase
from services.common.store._message_types import (
    MESSAGE_FIELDS,
    MESSAGE_INPUT_FIELDS,
    StoredMessage,
)
from services.common.store._notify import DataVersionWatcher
from services.common.store._sqlite_runner import SqliteRunner
from services.common.store._types import (
    JOB_FIELDS,
    JobCollection,
    JobStatus,
    MediaJob,
    from_millis,
)

SCHEMA_VERSION = 7
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
    details TEXT,
    claim_delay_ms INTEGER NOT NULL DEFAULT 0,
    claim_at INTEGER NOT NULL DEFAULT 0,
    media_result TEXT,
    checkpoint TEXT
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
        """CREATE TABLE IF NOT EXISTS whatsapp_auth (
            bot_id TEXT NOT NULL, kind TEXT NOT NULL, key_id TEXT NOT NULL,
            value TEXT NOT NULL, PRIMARY KEY (bot_id, kind, key_id)) WITHOUT ROWID""",
        # Webhook deliveries the relay gave up on (_sqlite_dead_letters.py).
        """CREATE TABLE IF NOT EXISTS webhook_dead_letters (
        bot_id TEXT NOT NULL, sequence INTEGER NOT NULL, correspondent_id TEXT NOT NULL,
        body TEXT NOT NULL, attempts INTEGER NOT NULL, outcome TEXT NOT NULL, status INTEGER,
        reason TEXT NOT NULL, first_attempt_at INTEGER NOT NULL, last_attempt_at INTEGER NOT NULL,
        dead_lettered_at INTEGER NOT NULL, PRIMARY KEY (bot_id, sequence))""",
        # Per-bot API tokens: a hash of the secret, never the secret (_api_tokens.py).
        """CREATE TABLE IF NOT EXISTS api_tokens (
            token_id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
            created_at INTEGER NOT NULL, label TEXT NOT NULL)""",
        # The identity map: a phone JID and a LID each belong to one person per bot.
        """CREATE TABLE IF NOT EXISTS identities (
            bot_id TEXT NOT NULL, phone_jid TEXT NOT NULL, lid TEXT NOT NULL,
            settled INTEGER NOT NULL, learned_at INTEGER NOT NULL,
            PRIMARY KEY (bot_id, phone_jid), UNIQUE (bot_id, lid))""",
        # The outgoing-message outbox (_sqlite_outbox.py); the payload is dropped once
        # the message is sent or failed.
        """CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY,
            bot_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, correspondent_id TEXT NOT NULL,
            kind TEXT NOT NULL, request_hash TEXT NOT NULL, payload BLOB,
            status TEXT NOT NULL, provider_message_id TEXT, reason TEXT,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
            UNIQUE (bot_id, idempotency_key))""",
        # Bytes staged per bot (the media quota; _sqlite_media_usage.py).
        """CREATE TABLE IF NOT EXISTS media_usage (
            bot_id TEXT PRIMARY KEY, staged_bytes INTEGER NOT NULL) WITHOUT ROWID""",
        # The delivery scan reads pending rows per bot in insertion order.
        """CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (bot_id, seq)
            WHERE status = 'pending'""",
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
    # Until version 6 claims went in arrival order: older jobs keep it.
    ("claim_delay_ms", "INTEGER NOT NULL DEFAULT 0", None),
    ("claim_at", "INTEGER NOT NULL DEFAULT 0", "UPDATE {table} SET claim_at = created_at"),
    ("media_result", "TEXT", None),
    # Version 7: progress of a job done in parts (none for older jobs).
    ("checkpoint", "TEXT", None),
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
        "CREATE INDEX IF NOT EXISTS api_tokens_bot ON api_tokens (bot_id, created_at)",
    ]
    for table in (ACTIVE, HOLDING, FAILED):
        statements += [
            f"CREATE INDEX IF NOT EXISTS {table}_bot ON {table} (bot_id, correspondent_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created_at)",
            # list_completed_jobs; the implicit trailing rowid (seq) orders equal times.
            f"CREATE INDEX IF NOT EXISTS {table}_completed ON {table} (status, updated_at)",
        ]
    for table in _LIVE:
        # The claim scans this index in claim_at order per (status, pool) and stops at
        # the first row whose available_at (read from the index itself) has come.
        statements.append(f"DROP INDEX IF EXISTS {table}_claim")
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_claim_order"
            f" ON {table} (status, pool, claim_at, seq, available_at)"
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

# With the sequence given: a batch of new messages in one executemany (see append_messages).
_APPEND_NUMBERED_SQL = (
    f"INSERT INTO queues ({_MESSAGE_INPUT}, sequence)"
    f" VALUES ({', '.join('?' for _ in MESSAGE_INPUT_FIELDS)}, ?)"
    " ON CONFLICT (bot_id, provider_name, correspondent_id, id) DO NOTHING"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lease_ms(seconds: float, what: str) -> int:
    return max(1, round(rules.check_seconds(seconds, what) * 1000))


def _opt_dt(millis: int | None) -> datetime | None:
    return None if millis is None else from_millis(millis)


def _job(row: Sequence[Any]) -> MediaJob:
    values = dict(zip(JOB_FIELDS, row, strict=True))
    for name in ("originating_time", "available_at", "created_at", "updated_at", "claim_at"):
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
    # One LIMIT 1 index scan per (pool, status) branch, then the first in claim order of
    # those few rows: the cost of a claim does not grow with the backlog.
    branches = []
    for index in range(pool_count):
        pool = f":pool{index}"
        branches.append(
            f"SELECT * FROM (SELECT seq, claim_at FROM {ACTIVE} WHERE status = 'pending'"
            f" AND pool = {pool} AND available_at <= :now ORDER BY claim_at, seq LIMIT 1)"
        )
        # Expired leases are found through their own partial index (earliest expiry
        # first), so many live claims cost nothing here.
        branches.append(
            f"SELECT * FROM (SELECT seq, claim_at FROM {ACTIVE} WHERE status = 'processing'"
            f" AND pool = {pool} AND lease_expires_at < :now ORDER BY lease_expires_at LIMIT 1)"
        )
    candidates = " UNION ALL ".join(branches)
    return (
        f"UPDATE {ACTIVE} SET status = 'processing', claimed_by = :worker,"
        " lease_expires_at = :lease, attempts = attempts + 1, fence = fence + 1,"
        " updated_at = :now"
        f" WHERE seq = (SELECT seq FROM ({candidates}) ORDER BY claim_at, seq LIMIT 1)"
        f" RETURNING {_JOB_SELECT}"
    )


class SqliteBase(AdapterBase):
    """The connection plumbing every part of `SqliteStore` shares: the file, its runner
    thread, the wake-up of `wait_for_jobs`."""

    def __init__(self, path: Path, runner: SqliteRunner) -> None:
        super().__init__()
        self._path = path
        self._runner = runner
        self._watcher: DataVersionWatcher | None = None
        self._claim_sql: dict[int, str] = {}

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5_000,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> Self:
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

    async def _close_resources(self) -> None:
        if self._watcher is not None:
            await self._watcher.close()
        await self._runner.close()

    async def _read(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._runner.call(operation, write=False)

    async def _write(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._runner.call(operation, write=True)


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


def _found_among(
    conn: sqlite3.Connection, sql: str, wanted: Sequence[str], params: Sequence[Any] = ()
) -> set[str]:
    """Which of `wanted` the query `sql` returns (its first column). `sql` holds `{marks}`
    where the IN list goes, after its own `params`; asked in chunks of `_IN_CHUNK`, far
    below SQLite's bound on host parameters."""
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(row[0] for row in conn.execute(sql.format(marks=marks), (*params, *chunk)))
    return found


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
