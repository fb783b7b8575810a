"""One JSON object per log line, carrying bot_id / correspondent_id / media_processing_id."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
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
