"""A stream handler that writes the log lines of one event-loop turn with one write.

A StreamHandler writes and flushes each line on its own: with one INFO line per media
message that was ~15 % of queue_svc's event-loop samples in the media bench. Here lines
logged on an event loop wait for the end of the current turn (microseconds to a few
milliseconds), then go out together. Lines of WARNING and above, lines logged outside
an event loop (threads, start-up) and `flush()` (logging's shutdown) write at once,
everything buffered first, so the order is kept and a crash's last lines are not held.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TextIO


class TurnStreamHandler(logging.StreamHandler[TextIO]):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        # The loop whose turn-end write is scheduled, if any.
        self._pending: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called with self.lock held (Handler.handle).
        try:
            self._lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING or self._pending not in (None, loop):
            self._write()
            return
        if self._pending is None:
            self._pending = loop
            loop.call_soon(self._end_of_turn)

    def _end_of_turn(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._pending = None
            self._write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()
            super().flush()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            # As StreamHandler.handleError: a broken stream must not break the code that
            # logs; the traceback goes where Python reports such errors.
            if logging.raiseExceptions:
                traceback.print_exc()
