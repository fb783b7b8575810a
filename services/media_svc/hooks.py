"""Test hooks: a crash at a chosen point of the job lifecycle, and a claim trace.

Both are off unless their environment variables are set (MEDIA_SVC_CRASH_AT,
MEDIA_SVC_TRACE_PATH); the crash-point suite and the benchmark use them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)


class CrashHook:
    def __init__(self, point: str | None) -> None:
        self._point = point

    def hit(self, point: str) -> None:
        if point == self._point:
            log.warning("MEDIA_SVC_CRASH_AT=%s reached: killing this process (test hook)", point)
            os.kill(os.getpid(), signal.SIGKILL)


class ClaimTrace:
    """Appends one JSON line per claim; single O_APPEND writes keep lines whole even
    when several processes share the file."""

    def __init__(self, path: Path | None) -> None:
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def claimed(
        self, media_processing_id: str, pool: str, token: int, created: datetime, claimed: datetime
    ) -> None:
        if self._fd is None:
            return
        line = json.dumps(
            {
                "id": media_processing_id,
                "pool": pool,
                "token": token,
                "pid": os.getpid(),
                "created_ms": created.timestamp() * 1000,
                "claimed_ms": claimed.timestamp() * 1000,
            }
        )
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
