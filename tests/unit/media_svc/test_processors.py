"""Built-in processors, the registry, and running CPU-bound processors out of the loop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidInputError
from services.common.store import JobStatus, MediaJob
from services.media_svc.execution import ProcessorExecutor
from services.media_svc.processors import (
    ProcessingFailure,
    ProcessingSuccess,
    TransientProcessingError,
    default_registry,
)
from tests.helpers.store_factories import new_job


def job(**overrides: object) -> MediaJob:
    now = datetime.now(UTC)
    base = dataclasses.asdict(new_job(pool="Image"))
    base.update(
        status=JobStatus.PROCESSING,
        attempts=1,
        fence=1,
        claimed_by="w",
        lease_expires_at=now,
        available_at=now,
        result=None,
        error=None,
        created_at=now,
        updated_at=now,
        failed_at=None,
    )
    base.update(overrides)
    return MediaJob(**base)


async def test_stub_returns_configured_text() -> None:
    stub = default_registry().create("stub", {"text": "an image", "delay_seconds": 0.01})
    assert await stub.process(job(), None) == ProcessingSuccess("an image")
    default = default_registry().create("stub", {})
    assert await default.process(job(media_kind="MEDIA_KIND_VOICE_NOTE"), None) == (
        ProcessingSuccess("[voice note received]")
    )


async def test_stub_transient_failures_count_attempts() -> None:
    stub = default_registry().create("stub", {"transient_failures": 1})
    with pytest.raises(TransientProcessingError):
        await stub.process(job(attempts=1), None)
    assert isinstance(await stub.process(job(attempts=2), None), ProcessingSuccess)


async def test_corrupt_marker_names_the_kind() -> None:
    corrupt = default_registry().create("corrupt", {})
    outcome = await corrupt.process(
        job(route="corrupt|MEDIA_KIND_IMAGE|image/jpeg", has_staged_file=False), None
    )
    assert outcome == ProcessingFailure("corrupt", "[Corrupted image: could not be decoded]")
    outcome = await corrupt.process(job(media_kind="MEDIA_KIND_VOICE_NOTE"), None)
    assert outcome == ProcessingFailure("corrupt", "[Corrupted voice note: could not be decoded]")
    assert outcome.error == "corrupt"


async def test_nodes_reason_goes_to_the_error_never_to_the_marker() -> None:
    detail = "download failed: HTTP 410 after re-upload"
    corrupt = default_registry().create("corrupt", {})
    outcome = await corrupt.process(
        job(route="corrupt|MEDIA_KIND_IMAGE|image/jpeg", condition_detail=detail), None
    )
    assert isinstance(outcome, ProcessingFailure)
    assert outcome.marker == "[Corrupted image: could not be decoded]"
    assert outcome.error == f"corrupt: {detail}"

    unsupported = default_registry().create("unsupported", {})
    over = await unsupported.process(
        job(route="over_quota|MEDIA_KIND_IMAGE|image/jpeg", condition_detail="quota 1 GB full"),
        None,
    )
    assert isinstance(over, ProcessingFailure)
    assert over.marker == "[Image not received: the bot's media storage is full]"
    assert over.error == "over_quota: quota 1 GB full"


async def test_unsupported_marker_names_the_type_or_the_quota() -> None:
    unsupported = default_registry().create("unsupported", {})
    outcome = await unsupported.process(
        job(
            mime_type="application/zip; foo=bar", route="staged|MEDIA_KIND_DOCUMENT|application/zip"
        ),
        None,
    )
    assert outcome == ProcessingFailure("unsupported", "[Unsupported media: application/zip]")
    over = await unsupported.process(job(route="over_quota|MEDIA_KIND_IMAGE|image/jpeg"), None)
    assert isinstance(over, ProcessingFailure)
    assert over.reason == "over_quota"
    assert over.marker == "[Image not received: the bot's media storage is full]"


def test_registry_rejects_unknown_names_and_options() -> None:
    registry = default_registry()
    with pytest.raises(InvalidInputError, match="unknown processor 'ocr'"):
        registry.create("ocr", {})
    with pytest.raises(InvalidInputError, match="unknown options"):
        registry.create("stub", {"delay": 1})
    with pytest.raises(InvalidInputError, match="delay_seconds"):
        registry.create("stub", {"delay_seconds": -1})


async def test_cpu_bound_processor_runs_in_another_process_without_blocking_the_loop() -> None:
    registry = default_registry()
    executor = ProcessorExecutor(processes=1, timeout_seconds=10.0)
    try:
        options = {"isolated": True, "delay_seconds": 0.3, "text": "done"}
        processor = registry.create("stub", options)
        assert processor.cpu_bound
        run = asyncio.create_task(executor.run(registry.factory("stub"), processor, job(), None))
        # The loop keeps ticking while the (blocking) stub sleeps in its process.
        ticks = 0
        started = time.monotonic()
        while not run.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert await run == ProcessingSuccess("done")
        assert ticks >= 10
        assert time.monotonic() - started >= 0.3
    finally:
        executor.close()


async def test_wall_clock_limit_kills_an_overrunning_run() -> None:
    registry = default_registry()
    executor = ProcessorExecutor(processes=1, timeout_seconds=0.5)
    try:
        slow = registry.create("stub", {"isolated": True, "delay_seconds": 30})
        started = time.monotonic()
        outcome = await executor.run(registry.factory("stub"), slow, job(), None)
        assert outcome == ProcessingFailure("timed_out", "[Image not processed: timed out]")
        assert time.monotonic() - started < 10
        # The pool is rebuilt for the next run.
        fast = registry.create("stub", {"isolated": True, "text": "ok"})
        assert await executor.run(registry.factory("stub"), fast, job(), None) == (
            ProcessingSuccess("ok")
        )
        coroutine_slow = registry.create("stub", {"delay_seconds": 30})
        assert isinstance(
            await executor.run(registry.factory("stub"), coroutine_slow, job(), None),
            ProcessingFailure,
        )
    finally:
        executor.close()
