"""Log lines are JSON and carry the ids of what the task is handling."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from services.common.errors import InvalidInputError
from services.common.logs import JsonFormatter, LogSummary, configure, log_fields


def _line(logger: logging.Logger, message: str, **extra: object) -> dict[str, object]:
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra or None
    )
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


async def test_fields_follow_the_task_that_set_them() -> None:
    logger = logging.getLogger("test.logs")

    async def handle(job_id: str) -> dict[str, object]:
        with log_fields(bot_id="b1", media_processing_id=job_id):
            await asyncio.sleep(0)
            return _line(logger, "processed", attempt=1)

    first, second = await asyncio.gather(handle("m-1"), handle("m-2"))
    assert (first["media_processing_id"], second["media_processing_id"]) == ("m-1", "m-2")
    assert first["bot_id"] == "b1" and first["attempt"] == 1 and first["msg"] == "processed"
    assert "media_processing_id" not in _line(logger, "outside")


def test_unknown_level_is_a_configuration_error() -> None:
    with pytest.raises(InvalidInputError, match="LOG_LEVEL"):
        configure("chatty")


def test_a_burst_of_repeated_events_becomes_one_line_per_interval() -> None:
    logger = logging.getLogger("test.summary")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.propagate = False
    logger.setLevel(logging.INFO)
    now = [0.0]
    summary = LogSummary(logger, "frames to resend", interval_seconds=10, clock=lambda: now[0])
    summary.note("queue_svc UNAVAILABLE", "frame 'a'")  # the first is told at once
    for i in range(500):
        now[0] = i * 0.01
        summary.note("queue_svc UNAVAILABLE", f"frame {i}")
    summary.note("bot 'b' is not active", "frame 'x'")
    assert len(records) == 1
    now[0] = 11.0
    summary.note("queue_svc UNAVAILABLE", "frame 'z'")
    assert len(records) == 2
    assert records[1].__dict__["counts"] == {
        "queue_svc UNAVAILABLE": 501,
        "bot 'b' is not active": 1,
    }
    assert "frames to resend in the last" in records[1].getMessage()
    summary.flush()
    assert len(records) == 2  # nothing left to tell
