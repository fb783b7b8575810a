"""One thread owns one SQLite connection and runs queued operations in group commits.

Why a thread of our own rather than `asyncio.to_thread`: a connection must stay on one
thread, and draining every operation queued since the last commit into one
`BEGIN IMMEDIATE … COMMIT` amortises the commit and the loop wake-up over all of them
(each operation keeps its own savepoint, so one failing operation undoes only itself).
The operations one event-loop turn starts reach the thread together, with one wake-up.

Lock waits are retried here with sub-millisecond sleeps instead of SQLite's busy
handler, whose sleeps grow to tens of milliseconds and would stall a second process.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from services.common.errors import UnavailableError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

# Bounds one transaction so a flood of callers cannot hold the write lock for long.
MAX_BATCH = 256
# WAL pages after which a commit checkpoints (SQLite's default is 1,000). A checkpoint
# copies each page once however often it changed since the last one, and a text batch
# of 256 messages dirties some 450 pages (measured: an index leaf per correspondent),
# so at 1,000 every second or third commit paid a checkpoint and its two fsyncs. At
# 4,000 pages of 4 KiB the WAL file stays near 16 MB of disk (more only while a reader
# holds an old snapshot); the memory-mapped wal-index grows by 32 KiB per 4,096 pages.
WAL_AUTOCHECKPOINT_PAGES = 4000


@dataclass(slots=True)
class _Request(Generic[T]):
    operation: Operation[T]
    future: asyncio.Future[T]
    write: bool


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class _BusyError(Exception):
    """The database lock could not be taken now; the whole batch is retried."""


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(error)
    return "locked" in text or "busy" in text


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves; timeout=0: lock waits are ours.
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=True)
    try:
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteRunner:
    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout_ms / 1000
        self._requests: queue.SimpleQueue[list[_Request[Any]] | None] = queue.SimpleQueue()
        # Per event loop, the operations of its current turn: handed to the thread together
        # at the turn's end, so a turn that starts many operations wakes the thread once.
        self._turns: dict[asyncio.AbstractEventLoop, list[_Request[Any]]] = {}
        self._thread = threading.Thread(target=self._run, name=f"sqlite:{path.name}", daemon=True)
        self._closed = False
        self._thread.start()

    async def call(self, operation: Operation[T], *, write: bool) -> T:
        if self._closed:
            raise UnavailableError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = []
            loop.call_soon(self._hand_over, loop)
        turn.append(_Request(operation, future, write))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        turn = self._turns.pop(loop, None) or []
        for start in range(0, len(turn), MAX_BATCH):
            self._requests.put(turn[start : start + MAX_BATCH])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for loop in list(self._turns):
            self._hand_over(loop)
        self._requests.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # --- runner thread -------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        setup_error: BaseException | None = None
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            setup_error = UnavailableError(f"cannot open SQLite database {self._path}: {exc}")
        stopping = False
        # A turn's operations that did not fit the last transaction open the next one.
        carried: list[_Request[Any]] | None = None
        while not stopping:
            first = carried if carried is not None else self._requests.get()
            carried = None
            if first is None:
                break
            batch: list[_Request[Any]] = first
            while len(batch) < MAX_BATCH:
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                if len(batch) + len(more) > MAX_BATCH:
                    carried = more
                    break
                batch.extend(more)
            if conn is None:
                assert setup_error is not None
                outcomes = [_Outcome(error=setup_error) for _ in batch]
            else:
                outcomes = self._execute(conn, batch)
            _deliver(batch, outcomes)
        if conn is not None:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        # Several processes opening a new file at once (queue_svc shards, media_svc
        # replicas): one switching it to WAL holds it locked for a moment; wait like any
        # other lock, up to the busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                return connect(self._path, self._synchronous)
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.001)

    def _execute(self, conn: sqlite3.Connection, batch: list[_Request[Any]]) -> list[_Outcome]:
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.00005
        while True:
            try:
                return self._attempt(conn, batch)
            except _BusyError as busy:
                if conn.in_transaction:
                    conn.rollback()
                if time.monotonic() >= deadline:
                    error = UnavailableError(
                        f"SQLite database {self._path} stayed locked for more than"
                        f" {self._busy_timeout * 1000:.0f} ms ({busy}); another process holds"
                        " the write lock — retry, or raise SQLITE_BUSY_TIMEOUT_MS"
                    )
                    return [_Outcome(error=error) for _ in batch]
                time.sleep(delay)
                delay = min(delay * 2, 0.001)

    @staticmethod
    def _attempt(conn: sqlite3.Connection, batch: list[_Request[Any]]) -> list[_Outcome]:
        writes = any(request.write for request in batch)
        try:
            # IMMEDIATE takes the write lock before reading, so no statement in the batch
            # can read a snapshot that another process changes before we write.
            conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _BusyError(str(exc)) from exc
            raise
        outcomes: list[_Outcome] = []
        single = len(batch) == 1
        for request in batch:
            if not single:
                conn.execute("SAVEPOINT op")
            try:
                outcome = _Outcome(value=request.operation(conn))
            except sqlite3.Error as exc:
                if _is_busy(exc):
                    raise _BusyError(str(exc)) from exc
                outcome = _Outcome(error=exc)
            except Exception as exc:  # a domain error of one operation fails only it
                outcome = _Outcome(error=exc)
            if not single:
                if outcome.error is not None and not conn.in_transaction:
                    # Some errors (disk full, I/O) make SQLite abort the whole transaction.
                    return [_Outcome(error=outcome.error) for _ in batch]
                if outcome.error is not None:
                    conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            elif outcome.error is not None:
                conn.rollback()
                return [outcome]
            outcomes.append(outcome)
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _BusyError(str(exc)) from exc
            raise
        return outcomes


def _deliver(batch: list[_Request[Any]], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for request, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(request.future.get_loop(), []).append((request.future, outcome))
    for loop, pairs in by_loop.items():
        # RuntimeError: the caller's loop is closed; nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, outcome in pairs:
        if future.done():  # cancelled by its caller
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.value)
