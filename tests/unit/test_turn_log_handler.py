"""TurnStreamHandler: lines of one event-loop turn go out in one write at its end;
warnings, lines outside a loop and flush() write at once, in order."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from services.common.turn_log_handler import TurnStreamHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, CountingStream, TurnStreamHandler]]:
    stream = CountingStream()
    handler = TurnStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_turn_log_handler")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, stream, handler
    finally:
        logger.handlers.clear()


async def test_one_turns_lines_are_one_write_at_the_turns_end(
    logged: tuple[logging.Logger, CountingStream, TurnStreamHandler],
) -> None:
    logger, stream, _ = logged
    for i in range(3):
        logger.info("line %d", i)
    assert stream.getvalue() == ""  # still this turn
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO line 0\nINFO line 1\nINFO line 2\n"
    assert stream.writes == 1


async def test_a_warning_writes_at_once_after_what_came_before(
    logged: tuple[logging.Logger, CountingStream, TurnStreamHandler],
) -> None:
    logger, stream, _ = logged
    logger.info("first")
    logger.warning("second")
    assert stream.getvalue() == "INFO first\nWARNING second\n"
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO first\nWARNING second\n"


async def test_flush_writes_what_the_turn_holds(
    logged: tuple[logging.Logger, CountingStream, TurnStreamHandler],
) -> None:
    logger, stream, handler = logged
    logger.info("pending")
    handler.flush()
    assert stream.getvalue() == "INFO pending\n"


def test_outside_an_event_loop_every_line_writes_at_once(
    logged: tuple[logging.Logger, CountingStream, TurnStreamHandler],
) -> None:
    logger, stream, _ = logged
    logger.info("a")
    assert stream.getvalue() == "INFO a\n"
    logger.debug("b")
    assert stream.getvalue() == "INFO a\nDEBUG b\n"
