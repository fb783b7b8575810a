"""A database file made by the first SQLite schema (version 1) keeps working after upgrade.

The old tables are created here with plain sqlite3 from the CREATE statements of
schema version 1 (services/common/store/sqlite.py before `fence` was added), filled with
jobs in every state, and then opened by the current store.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.common.store import JobCollection, JobStatus, StoreConfig, open_store
from services.common.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.helpers.store_factories import message, new_job
from tests.helpers.store_factories import message as new_message

ACTIVE, HOLDING, FAILED = JobCollection.ACTIVE, JobCollection.HOLDING, JobCollection.FAILED
_TABLES = {
    ACTIVE: "media_processing_jobs",
    HOLDING: "media_processing_jobs_holding",
    FAILED: "media_processing_jobs_failed",
}

# The job columns of schema version 1, verbatim
# (`git show 9dd4403:services/common/store/sqlite.py`).
_V1_JOB_COLUMNS_SQL = """
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
    claimed_by TEXT,
    lease_expires_at INTEGER,
    available_at INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    failed_at INTEGER
"""


def _v1_schema() -> list[str]:
    active, holding, failed = _TABLES[ACTIVE], _TABLES[HOLDING], _TABLES[FAILED]
    statements = [
        """CREATE TABLE IF NOT EXISTS bot_configurations (
            id TEXT PRIMARY KEY, document TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS queues (
            seq INTEGER PRIMARY KEY,
            bot_id TEXT NOT NULL, provider_name TEXT NOT NULL, correspondent_id TEXT NOT NULL,
            id INTEGER NOT NULL, content TEXT NOT NULL, sender TEXT NOT NULL,
            source TEXT NOT NULL, originating_time INTEGER NOT NULL,
            provider_message_id TEXT NOT NULL, message_size INTEGER NOT NULL,
            group_id TEXT, group_name TEXT, mime_type TEXT, original_filename TEXT,
            media_kind TEXT,
            UNIQUE (bot_id, provider_name, correspondent_id, id))""",
        """CREATE INDEX IF NOT EXISTS queues_provider_message_id
            ON queues (bot_id, provider_message_id)""",
        """CREATE TABLE IF NOT EXISTS leases (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL)""",
    ]
    for table in (active, holding, failed):
        statements += [
            f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY, {_V1_JOB_COLUMNS_SQL})",
            f"CREATE INDEX IF NOT EXISTS {table}_bot ON {table} (bot_id, correspondent_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created_at)",
        ]
    for table in (active, holding):
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_claim"
            f" ON {table} (status, pool, created_at, seq, available_at)"
        )
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}_lease ON {table} (pool, lease_expires_at)"
            " WHERE status = 'processing'"
        )
    statements += [
        f"CREATE INDEX IF NOT EXISTS {failed}_failed_at ON {failed} (failed_at)",
        f"CREATE INDEX IF NOT EXISTS {failed}_bot_failed_at ON {failed} (bot_id, failed_at)",
        f"CREATE INDEX IF NOT EXISTS {failed}_error ON {failed} (error)",
        "PRAGMA user_version = 1",
    ]
    return statements


def _v1_row(now_ms: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "media_processing_id": str(uuid.uuid4()),
        "bot_id": "bot-1",
        "provider_name": "whatsapp_baileys",
        "correspondent_id": "4915100000001@s.whatsapp.net",
        "message_id": 3,
        "sender": "Alice",
        "source": "user",
        "originating_time": now_ms - 60_000,
        "provider_message_id": f"WA-{uuid.uuid4().hex[:12]}",
        "caption": "",
        "mime_type": "image/jpeg",
        "media_kind": "MEDIA_KIND_IMAGE",
        "original_filename": None,
        "file_size": 100,
        "route": "staged|MEDIA_KIND_IMAGE|image/jpeg",
        "pool": "image",
        "has_staged_file": 1,
        "group_id": None,
        "group_name": None,
        "status": "pending",
        "attempts": 0,
        "claimed_by": None,
        "lease_expires_at": None,
        "available_at": now_ms - 50_000,
        "result": None,
        "error": None,
        "created_at": now_ms - 50_000,
        "updated_at": now_ms - 50_000,
        "failed_at": None,
    }
    row.update(overrides)
    return row


def _make_v1_database(path: Path, rows: dict[JobCollection, list[dict[str, Any]]]) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in _v1_schema():
            conn.execute(statement)
        conn.execute(
            "INSERT INTO bot_configurations (id, document) VALUES (?, ?)",
            ("bot-1", '{"provider_name": "whatsapp_baileys", "max_messages": 50}'),
        )
        for collection, table_rows in rows.items():
            for row in table_rows:
                columns = ", ".join(row)
                marks = ", ".join(f":{name}" for name in row)
                conn.execute(f"INSERT INTO {_TABLES[collection]} ({columns}) VALUES ({marks})", row)
        conn.commit()
    finally:
        conn.close()


def _columns(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def _indexes(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA index_list({table})")}
    finally:
        conn.close()


def _query_plan(path: Path, sql: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
    finally:
        conn.close()


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version
    finally:
        conn.close()


async def test_a_version_1_database_is_migrated_and_its_jobs_still_work(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    now = time.time_ns() // 1_000_000
    # A worker died holding this job (its lease ran out) on its second attempt.
    abandoned = _v1_row(
        now,
        status="processing",
        attempts=2,
        claimed_by="dead-worker",
        lease_expires_at=now - 1_000,
        created_at=now - 90_000,
    )
    pending = _v1_row(now)
    held_done = _v1_row(
        now, bot_id="bot-2", status="completed", attempts=1, result="a cat", updated_at=now - 40_000
    )
    failed = _v1_row(
        now, status="processing", attempts=3, error="timed out", failed_at=now - 30_000
    )
    _make_v1_database(path, {ACTIVE: [abandoned, pending], HOLDING: [held_done], FAILED: [failed]})

    config = StoreConfig(backend="sqlite", sqlite_path=path)
    store = await open_store(config)
    try:
        assert isinstance(store, SqliteStore)
        # The fence continues from attempts (the token of schema version 1).
        for collection, row in (
            (ACTIVE, abandoned),
            (ACTIVE, pending),
            (HOLDING, held_done),
            (FAILED, failed),
        ):
            found = await store.get_job(row["media_processing_id"])
            assert found is not None and found[0] is collection
            assert found[1].attempts == row["attempts"] and found[1].fence == row["attempts"]
            assert found[1].condition_detail is None
        assert (await store.get_bot_config("bot-1")) is not None

        # The abandoned job is reclaimed; the dead worker's old token stays refused.
        reclaimed = await store.claim_job(["image"], "w1", 30)
        assert reclaimed is not None
        assert reclaimed.job.media_processing_id == abandoned["media_processing_id"]
        assert reclaimed.token == 3 and reclaimed.job.attempts == 3
        assert await store.complete_job(abandoned["media_processing_id"], 2, "stale") is None
        assert (
            await store.complete_job(abandoned["media_processing_id"], reclaimed.token, "done")
            is ACTIVE
        )

        second = await store.claim_job(["image"], "w1", 30)
        assert second is not None
        assert second.job.media_processing_id == pending["media_processing_id"]
        assert second.token == 1
        assert await store.complete_job(pending["media_processing_id"], 1, "ok") is ACTIVE

        # An operator requeues the old dead letter: its next token is beyond every old one.
        assert await store.requeue_failed_job(failed["media_processing_id"], ACTIVE)
        again = await store.claim_job(["image"], "w1", 30)
        assert again is not None
        assert again.job.media_processing_id == failed["media_processing_id"]
        assert (again.token, again.job.attempts) == (4, 1)
        assert await store.complete_job(failed["media_processing_id"], 3, "stale") is None
        assert await store.complete_job(failed["media_processing_id"], 4, "late") is ACTIVE

        assert await store.move_bot_jobs("bot-2", HOLDING, ACTIVE) == 1
        [moved] = await store.list_jobs("bot-2", ACTIVE)
        assert moved.status is JobStatus.COMPLETED and moved.result == "a cat"
        # The redelivery sweep's query finds old and new completions, oldest change first.
        swept = await store.list_completed_jobs(ACTIVE, datetime.now(UTC) + timedelta(seconds=1))
        assert [j.media_processing_id for j in swept] == [
            held_done["media_processing_id"],
            abandoned["media_processing_id"],
            pending["media_processing_id"],
            failed["media_processing_id"],
        ]

        # New jobs go into the migrated tables as usual, with the new fields.
        fresh = new_job(condition_detail="download failed: HTTP 410")
        assert await store.create_job(fresh)
        claim = await store.claim_job(["image"], "w1", 30)
        assert claim is not None and claim.job.media_processing_id == fresh.media_processing_id
        assert claim.token == 1 and claim.job.condition_detail == "download failed: HTTP 410"
    finally:
        await store.close()

    for table in _TABLES.values():
        assert {"fence", "condition_detail", "details"} <= _columns(path, table)
        assert f"{table}_completed" in _indexes(path, table)
    assert _user_version(path) == SCHEMA_VERSION
    plan = _query_plan(
        path,
        "SELECT media_processing_id FROM media_processing_jobs WHERE status = 'completed'"
        " AND updated_at < 1 ORDER BY updated_at, seq LIMIT 100",
    )
    assert "media_processing_jobs_completed" in plan and "TEMP B-TREE" not in plan

    # Opening again changes nothing and loses nothing.
    reopened = await open_store(config)
    try:
        done = await reopened.list_jobs("bot-1", ACTIVE)
        assert {j.media_processing_id for j in done if j.status is JobStatus.COMPLETED} == {
            abandoned["media_processing_id"],
            pending["media_processing_id"],
            failed["media_processing_id"],
        }
        found = await reopened.get_job(failed["media_processing_id"])
        assert found is not None and found[1].fence == 4
    finally:
        await reopened.close()


async def test_messages_of_an_older_file_get_delivery_sequences_in_insertion_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    _make_v1_database(path, {})
    conn = sqlite3.connect(path)
    try:
        now = time.time_ns() // 1_000_000
        # Interleaved bots, ids not in insertion order: the rowid decides.
        for bot_id, message_id in (("bot-1", 2), ("bot-2", 1), ("bot-1", 1), ("bot-1", 3)):
            conn.execute(
                "INSERT INTO queues (bot_id, provider_name, correspondent_id, id, content,"
                " sender, source, originating_time, provider_message_id, message_size)"
                " VALUES (?, 'whatsapp_baileys', 'c1', ?, 'x', 'Alice', 'user', ?, ?, 1)",
                (bot_id, message_id, now, f"WA-{bot_id}-{message_id}"),
            )
        conn.commit()
    finally:
        conn.close()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=path))
    try:
        old = await store.messages_after("bot-1", 0)
        assert [(m.id, m.sequence) for m in old] == [(2, 1), (1, 2), (3, 3)]
        assert await store.max_sequence("bot-2") == 1
        # New rows continue after the numbered ones.
        fresh = await store.append_messages([new_message(4, correspondent_id="c1")])
        assert fresh.sequences == [4] and fresh.inserted == 1
    finally:
        await store.close()
    assert "queues_sequence" in _indexes(path, "queues")


async def test_old_persisted_messages_gain_an_empty_details_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _make_v1_database(path, {})
    old = message(1, content="written before details existed")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO queues (bot_id, provider_name, correspondent_id, id, content, sender,"
            " source, originating_time, provider_message_id, message_size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                old.bot_id,
                old.provider_name,
                old.correspondent_id,
                old.id,
                old.content,
                old.sender,
                old.source,
                int(old.originating_time.timestamp() * 1000),
                old.provider_message_id,
                old.message_size,
            ),
        )
        conn.commit()
    finally:
        conn.close()
    assert "details" not in _columns(path, "queues")

    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=path))
    try:
        new = message(2, details='{"details":{"deletion":{"targetMessageId":"X1"}}}')
        assert await store.insert_messages([new]) == 1
        history = await store.message_history(old.bot_id, old.provider_name, old.correspondent_id)
        # The old row was numbered by the migration, the new one after it.
        assert history == [replace(old, sequence=1), replace(new, sequence=2)]
    finally:
        await store.close()
    assert "details" in _columns(path, "queues")
