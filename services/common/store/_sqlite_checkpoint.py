"""Copies the write-ahead log back into the database file off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL over its
threshold: that commit copies the pages and syncs the database file before it returns,
which held every operation of the batch (and every frame waiting on it) for several
milliseconds, and set the text path's p99 at 1,000 msg/s (12.5 ms with it, 5-7 ms
without). Here a thread of its own runs PASSIVE checkpoints, which never take the
write lock, after writes, at most once per `interval` seconds.

The writing connection keeps an automatic checkpoint with a high threshold
(`SAFETY_PAGES`) as a safety net: under writes without pause a passive checkpoint is
always a little behind, so the log never restarts from its beginning; once it holds
that many pages, the commit that crosses the line checkpoints (only the few pages not
yet copied) and the log starts over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: The writing connection's own checkpoint threshold, in pages (4 KiB each): 40 MiB.
SAFETY_PAGES = 10_000
#: The least time between two background checkpoints, in seconds. A page written many
#: times in between is copied once: at saturation a text batch rewrites the same few
#: hundred index pages, and copying them more often costs CPU for nothing.
INTERVAL_SECONDS = 0.2


class WalCheckpointer:
    def __init__(
        self,
        path: Path,
        connect: Callable[[], sqlite3.Connection],
        *,
        interval_seconds: float = INTERVAL_SECONDS,
    ) -> None:
        self._path = path
        self._connect = connect
        self._interval = interval_seconds
        self._written = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path.name}", daemon=True
        )
        self._thread.start()

    def written(self) -> None:
        """A write transaction committed (called from the writing thread)."""
        if not self._written.is_set():
            self._written.set()

    def stop(self) -> None:
        """Ends the thread; the last connection's close checkpoints what is left."""
        self._stopping.set()
        self._written.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._written.wait()
                if self._stopping.is_set():
                    return
                self._written.clear()
                conn = self._checkpoint(conn)
                # Writes during the pause are taken by the next checkpoint.
                if self._stopping.wait(self._interval):
                    return
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        try:
            if conn is None:
                # Opened at the first write: by then the runner made the file and WAL mode.
                conn = self._connect()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # A checkpoint that cannot run now is not an error of anyone's write: the
            # next write tries again, and the safety threshold still bounds the log.
            log.debug("background checkpoint of %s skipped: %s", self._path, exc)
        return conn
