"""The soak's memory trace: off by default; when on, it reports the allocations that
grew after the warm-up, with where they were made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.common.memory_trace import start_memory_trace
from tests.helpers.waiting import wait_until


def test_off_unless_a_path_is_given() -> None:
    assert start_memory_trace({}) is None
    assert start_memory_trace({"MEMORY_TRACE_PATH": ""}) is None


def test_a_bad_interval_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="MEMORY_TRACE_SECONDS"):
        start_memory_trace(
            {"MEMORY_TRACE_PATH": str(tmp_path / "t.jsonl"), "MEMORY_TRACE_SECONDS": "0"}
        )


async def test_reports_what_grew_after_the_warm_up(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = start_memory_trace({"MEMORY_TRACE_PATH": str(path), "MEMORY_TRACE_SECONDS": "0.2"})
    assert trace is not None
    held: list[bytes] = []
    try:

        def grown() -> bool:
            held.append(bytes(100_000))  # keeps growing, as a leak would
            lines = path.read_text().splitlines() if path.exists() else []
            return any(
                any(
                    "test_memory_trace.py" in w for s in json.loads(line)["top"] for w in s["where"]
                )
                for line in lines
            )

        await wait_until(grown, 20, 0.05)
    finally:
        trace.stop()
    report = json.loads(path.read_text().splitlines()[-1])
    assert report["traced_mb"] > 0
    assert report["top"][0]["kb"] > 0
