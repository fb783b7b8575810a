"""Wake-ups for `wait_for_jobs`: in this process directly, across processes by polling."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class Notifier:
    """A re-armed event: `wake()` releases every current waiter."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 (mirrors wait_for_jobs)
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class DataVersionWatcher:
    """Polls `PRAGMA data_version` on its own connection while someone waits.

    data_version changes whenever another connection (another process, or this process's
    writer) commits, so it catches jobs created by other processes on the same file.
    """

    def __init__(
        self, path: Path, loop: asyncio.AbstractEventLoop, notifier: Notifier, interval: float
    ) -> None:
        self._path = path
        self._loop = loop
        self._notifier = notifier
        self._interval = interval
        self._waiters = 0
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-watch", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self._waiters += 1
        self._active.set()
        try:
            yield
        finally:
            self._waiters -= 1
            if self._waiters == 0:
                self._active.clear()

    async def close(self) -> None:
        self._stop.set()
        self._active.set()
        await self._loop.run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=1.0, isolation_level=None)
        try:
            last: int | None = None
            while not self._stop.is_set():
                if not self._active.wait(timeout=0.5):
                    continue
                try:
                    version: int | None = int(conn.execute("PRAGMA data_version").fetchone()[0])
                except sqlite3.OperationalError:
                    version = last  # transient lock during WAL recovery; poll again
                if last is not None and version != last:
                    with contextlib.suppress(RuntimeError):  # loop already closed
                        self._loop.call_soon_threadsafe(self._notifier.wake)
                last = version
                self._stop.wait(self._interval)
        finally:
            conn.close()
