"""SqliteRunner: the operations of one event-loop turn reach the thread together and
commit together, never more than MAX_BATCH per transaction; each keeps its own result."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.store import _sqlite_runner
from services.common.store._sqlite_runner import MAX_BATCH, SqliteRunner


async def test_one_turns_operations_share_transactions_of_at_most_max_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    attempt = SqliteRunner._attempt

    def counting(conn: sqlite3.Connection, batch: list[Any]) -> list[Any]:
        sizes.append(len(batch))
        return attempt(conn, batch)

    monkeypatch.setattr(_sqlite_runner.SqliteRunner, "_attempt", staticmethod(counting))
    runner = SqliteRunner(tmp_path / "db.sqlite3", "NORMAL", 1000)
    try:
        await runner.call(lambda c: c.execute("CREATE TABLE t (n INTEGER)"), write=True)
        sizes.clear()
        count = 2 * MAX_BATCH + 88

        def insert(n: int) -> Callable[[sqlite3.Connection], int]:
            def op(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO t VALUES (?)", (n,))
                return n

            return op

        results = await asyncio.gather(*(runner.call(insert(n), write=True) for n in range(count)))
        assert results == list(range(count))
        assert sizes == [MAX_BATCH, MAX_BATCH, 88]
        rows = await runner.call(
            lambda c: c.execute("SELECT count(*) FROM t").fetchone(), write=False
        )
        assert rows == (count,)
    finally:
        await runner.close()


async def test_the_connection_checkpoints_the_wal_at_the_stated_size(tmp_path: Path) -> None:
    # The comment on WAL_AUTOCHECKPOINT_PAGES derives the WAL's disk size from it.
    runner = SqliteRunner(tmp_path / "db.sqlite3", "NORMAL", 1000)
    try:
        pages = await runner.call(
            lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0], write=False
        )
        assert pages == _sqlite_runner.WAL_AUTOCHECKPOINT_PAGES
    finally:
        await runner.close()
