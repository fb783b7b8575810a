"""One JSON object per log line, carrying bot_id / correspondent_id / media_processing_id."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from services.common.errors import InvalidInputError

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Per asyncio task (each task runs in a copy of its creator's context), so the ids of
# the job or frame a task is handling appear on every line it logs.
_FIELDS: ContextVar[Mapping[str, Any]] = ContextVar("log_fields", default=MappingProxyType({}))


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Adds these fields (e.g. bot_id, correspondent_id, media_processing_id) to every
    log line written inside the block by this task."""
    token = _FIELDS.set({**_FIELDS.get(), **fields})
    try:
        yield
    finally:
        _FIELDS.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_FIELDS.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for every logger of the process (ours and libraries')."""
    name = level.strip().upper()
    if name not in logging.getLevelNamesMapping():
        raise InvalidInputError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)


class LogSummary:
    """One log line per interval for an event that can repeat hundreds of times a second.

    The first event after a quiet interval is logged at once; the rest of a burst is
    counted by key and reported in the next line (at most one per interval), with one
    example each. `flush()` reports what is left, e.g. at shutdown.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.INFO,
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._level = level
        self._interval = interval_seconds
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._examples: dict[str, str] = {}
        self._since: float | None = None
        self._last_line = -float("inf")

    def note(self, key: str, example: str = "") -> None:
        now = self._clock()
        if self._since is None:
            self._since = now
        self._counts[key] += 1
        self._examples.setdefault(key, example)
        if now - self._last_line >= self._interval:
            self.flush()

    def flush(self) -> None:
        if not self._counts:
            return
        now = self._clock()
        parts = [
            f"{key} x{count}" + (f" (e.g. {self._examples[key]})" if self._examples[key] else "")
            for key, count in self._counts.most_common()
        ]
        self._logger.log(
            self._level,
            "%s in the last %.1fs: %s",
            self._what,
            now - (self._since if self._since is not None else now),
            "; ".join(parts),
            extra={"counts": dict(self._counts)},
        )
        self._counts.clear()
        self._examples.clear()
        self._since = None
        self._last_line = now
