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
from services.common.store._sqlite_checkpoint import SAFETY_PAGES
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


async def test_the_log_is_copied_back_to_the_database_file_off_the_commit_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.close()
    runner = SqliteRunner(path, "NORMAL", 1000)
    loop = asyncio.get_running_loop()
    try:
        await runner.call(lambda c: c.execute("CREATE TABLE t (b BLOB)"), write=True)
        row = (b"x" * 1000,)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (?)", row)

        for _ in range(40):  # 40 commits of 50 rows, about 2 MB
            await asyncio.gather(*(runner.call(insert, write=True) for _ in range(50)))
        # Far below the writing connection's own threshold (SAFETY_PAGES): only the
        # background checkpointer copies these pages into the database file.
        assert SAFETY_PAGES * 4096 > 2_000_000
        deadline = loop.time() + 30
        while path.stat().st_size < 1_500_000:
            assert loop.time() < deadline, "the log was never copied back"
            await asyncio.sleep(0.02)
    finally:
        await runner.close()
