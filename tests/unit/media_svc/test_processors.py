"""Built-in processors, the registry, and the per-pool execution layer: blocking
processors in their pool's own processes, engines loaded once per process, wall-clock
and memory limits that end only the offending pool's processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import InvalidInputError
from services.common.vocabulary import MediaCondition
from services.media_svc.definitions import ActivePool, PoolDefaults, build
from services.media_svc.execution import PoolExecutors
from services.media_svc.processors import (
    ProcessingFailure,
    ProcessingSuccess,
    ProcessorInput,
    ProcessorRegistry,
    TransientProcessingError,
    default_registry,
)
from services.media_svc.processors.registry import builtin_types
from tests.helpers.processors import ProbeProcessor
from tests.helpers.waiting import wait_until


def item(**overrides: Any) -> ProcessorInput:
    values: dict[str, Any] = {"media_kind": "MEDIA_KIND_IMAGE", "mime": "image/jpeg", "path": None}
    values.update(overrides)
    return ProcessorInput(**values)


def registry() -> ProcessorRegistry:
    return ProcessorRegistry({**builtin_types(), "probe": ProbeProcessor})


def pools(*specs: dict[str, Any], defaults: PoolDefaults | None = None) -> list[ActivePool]:
    """Active pools from definition entries (the first is the fallback)."""
    document = {
        "pools": [
            {"fallback": i == 0, **({} if i == 0 else {"routes": [{"condition": "corrupt"}]}), **s}
            if i < 2
            else {"routes": [{"condition": "over_quota"}], **s}
            for i, s in enumerate(specs)
        ]
    }
    return list(build(document, registry(), defaults).pools)


async def test_stub_returns_configured_text() -> None:
    [stub] = pools({"name": "Image", "processor": "stub", "options": {"text": "an image"}})
    executors = PoolExecutors()
    assert await executors.run(stub, item()) == ProcessingSuccess("an image")
    [default] = pools({"name": "Image", "processor": "stub"})
    assert await executors.run(default, item(media_kind="MEDIA_KIND_VOICE_NOTE")) == (
        ProcessingSuccess("[voice note received]")
    )


async def test_stub_transient_failures_count_attempts() -> None:
    [stub] = pools({"name": "I", "processor": "stub", "options": {"transient_failures": 1}})
    executors = PoolExecutors()
    with pytest.raises(TransientProcessingError):
        await executors.run(stub, item(attempt=1))
    assert isinstance(await executors.run(stub, item(attempt=2)), ProcessingSuccess)


async def test_corrupt_marker_names_the_kind_and_keeps_nodes_reason_for_operators() -> None:
    [corrupt] = pools({"name": "Corrupt", "processor": "corrupt"})
    executors = PoolExecutors()
    detail = "download failed: HTTP 410 after re-upload"
    outcome = await executors.run(
        corrupt, item(condition=MediaCondition.CORRUPT, condition_detail=detail)
    )
    assert outcome == ProcessingFailure(
        "corrupt", "[Corrupted image: could not be decoded]", detail
    )
    assert outcome.error == f"corrupt: {detail}"
    voice = await executors.run(corrupt, item(media_kind="MEDIA_KIND_VOICE_NOTE"))
    assert voice == ProcessingFailure("corrupt", "[Corrupted voice note: could not be decoded]")


async def test_unsupported_marker_names_a_sanitized_type_or_the_quota() -> None:
    [unsupported] = pools({"name": "Unsupported", "processor": "unsupported"})
    executors = PoolExecutors()
    outcome = await executors.run(unsupported, item(mime="application/zip"))
    assert outcome == ProcessingFailure("unsupported", "[Unsupported media: application/zip]")
    for hostile in ("application/x\nzip", "../../etc/passwd", "a" * 300 + "/b", "\x1b[31m/x"):
        marked = await executors.run(unsupported, item(mime=hostile))
        assert marked == ProcessingFailure("unsupported", "[Unsupported media: unknown type]")
    over = await executors.run(
        unsupported,
        item(condition=MediaCondition.OVER_QUOTA, condition_detail="quota 1 GB full"),
    )
    assert isinstance(over, ProcessingFailure)
    assert over.marker == "[Image not received: the bot's media storage is full]"
    assert over.error == "over_quota: quota 1 GB full"


def test_unknown_processors_and_options_are_refused_when_the_definitions_load() -> None:
    with pytest.raises(InvalidInputError, match="unknown processor 'ocr'"):
        pools({"name": "I", "processor": "ocr"})
    with pytest.raises(InvalidInputError, match="unknown options"):
        pools({"name": "I", "processor": "stub", "options": {"delay": 1}})
    with pytest.raises(InvalidInputError, match="delay_seconds"):
        pools({"name": "I", "processor": "stub_blocking", "options": {"delay_seconds": -1}})
    with pytest.raises(InvalidInputError, match="max_attempts"):
        pools({"name": "I", "processor": "stub", "max_attempts": 0})
    with pytest.raises(InvalidInputError, match="timeout_seconds"):
        pools({"name": "I", "processor": "stub", "timeout_seconds": "soon"})
    with pytest.raises(InvalidInputError, match="max_pixels"):
        pools({"name": "I", "processor": "probe", "options": {"max_pixels": 0}})


def test_pool_settings_default_to_the_environment_and_may_be_set_per_pool() -> None:
    defaults = PoolDefaults(timeout_seconds=30, max_attempts=4, memory_limit_mb=512)
    plain, tuned = pools(
        {"name": "A", "processor": "stub"},
        {
            "name": "B",
            "processor": "probe",
            "timeout_seconds": 2.5,
            "max_attempts": 1,
            "memory_limit_mb": 256,
        },
        defaults=defaults,
    )
    assert (plain.settings.timeout_seconds, plain.settings.max_attempts) == (30, 4)
    assert plain.settings.memory_limit_mb == 512
    assert (tuned.settings.timeout_seconds, tuned.settings.max_attempts) == (2.5, 1)
    assert tuned.settings.memory_limit_mb == 256
    assert tuned.definition.timeout_seconds == 2.5
    assert default_registry().names == [
        "audio",
        "corrupt",
        "document",
        "image",
        "sticker",
        "stub",
        "stub_blocking",
        "unsupported",
        "video",
    ]


async def test_blocking_processor_runs_in_its_pools_process_without_blocking_the_loop() -> None:
    [blocking] = pools(
        {"name": "I", "processor": "stub_blocking", "options": {"delay_seconds": 0.3, "text": "x"}}
    )
    executors = PoolExecutors()
    try:
        run = asyncio.create_task(executors.run(blocking, item()))
        ticks = 0
        started = time.monotonic()
        while not run.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert await run == ProcessingSuccess("x")
        assert ticks >= 10  # the loop kept ticking while the stub slept in its process
        assert time.monotonic() - started >= 0.3
    finally:
        executors.close()


def _probe(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split())


async def test_engine_loads_once_per_process_and_serves_every_job(tmp_path: Path) -> None:
    [probe] = pools({"name": "Probe", "processor": "probe", "concurrency": 1})
    executors = PoolExecutors()
    try:
        await executors.warm(probe)
        runs = [await executors.run(probe, item(size=n)) for n in range(4)]
        reports = [_probe(r.text) for r in runs if isinstance(r, ProcessingSuccess)]
        assert len(reports) == 4
        assert len({(r["pid"], r["engine"]) for r in reports}) == 1
        assert [r["jobs"] for r in reports] == ["1", "2", "3", "4"]
        assert [r["size"] for r in reports] == ["0", "1", "2", "3"]
    finally:
        executors.close()


async def test_a_timeout_kills_only_its_own_pools_processes() -> None:
    slow, other = pools(
        {"name": "Slow", "processor": "probe", "timeout_seconds": 0.5},
        {"name": "Other", "processor": "probe"},
    )
    executors = PoolExecutors()
    try:
        before = await executors.run(other, item())
        assert isinstance(before, ProcessingSuccess)
        slow_sleeping = pools(
            {
                "name": "Slow",
                "processor": "probe",
                "timeout_seconds": 0.5,
                "options": {"sleep_seconds": 30},
            }
        )[0]
        started = time.monotonic()
        outcome = await executors.run(slow_sleeping, item())
        assert outcome == ProcessingFailure("timed_out", "[Image not processed: timed out]")
        assert time.monotonic() - started < 10
        after = await executors.run(other, item())
        assert isinstance(after, ProcessingSuccess)
        # Same process, same engine load: the other pool's engine survived the kill.
        assert _probe(after.text)["pid"] == _probe(before.text)["pid"]
        assert _probe(after.text)["engine"] == _probe(before.text)["engine"]
        # The timed-out pool is rebuilt for its next run (warmed first: on a loaded
        # machine a fresh process may take longer to start than this pool's 0.5 s limit).
        await executors.warm(slow)
        assert isinstance(await executors.run(slow, item()), ProcessingSuccess)
        [async_slow] = pools(
            {
                "name": "A",
                "processor": "stub",
                "timeout_seconds": 0.2,
                "options": {"delay_seconds": 30},
            }
        )
        assert isinstance(await executors.run(async_slow, item()), ProcessingFailure)
    finally:
        executors.close()


async def test_a_crashing_process_is_a_transient_error_and_the_pool_recovers() -> None:
    [crashing] = pools({"name": "P", "processor": "probe", "options": {"exit_code": 3}})
    [healthy] = pools({"name": "P", "processor": "probe"})
    executors = PoolExecutors()
    try:
        with pytest.raises(TransientProcessingError, match="process died"):
            await executors.run(crashing, item())
        assert isinstance(await executors.run(healthy, item()), ProcessingSuccess)
    finally:
        executors.close()


async def test_memory_cap_turns_an_oversized_job_into_a_failure_marker() -> None:
    [capped] = pools(
        {
            "name": "P",
            "processor": "probe",
            "memory_limit_mb": 400,
            "options": {"allocate_mb": 2048},
        }
    )
    executors = PoolExecutors()
    try:
        outcome = await executors.run(capped, item(media_kind="MEDIA_KIND_VIDEO"))
        assert outcome == ProcessingFailure(
            "too_large",
            "[Video not processed: too large to process]",
            "worker memory limit reached",
        )
        [fits] = pools(
            {
                "name": "P",
                "processor": "probe",
                "memory_limit_mb": 400,
                "options": {"allocate_mb": 50},
            }
        )
        assert isinstance(await executors.run(fits, item()), ProcessingSuccess)
    finally:
        executors.close()


async def test_a_cancelled_run_kills_its_pools_processes() -> None:
    """A lost lease cancels the job's run: a blocking run cannot be interrupted, so its
    process dies (as on a timeout) instead of computing a result nobody may write."""
    [slow] = pools({"name": "P", "processor": "probe", "options": {"sleep_seconds": 3600}})
    [quick] = pools({"name": "P", "processor": "probe"})
    executors = PoolExecutors()
    try:
        running = asyncio.create_task(executors.run(slow, item()))
        await wait_until(lambda: bool(_worker_pids(executors, "P")), within=10)
        pids = _worker_pids(executors, "P")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await wait_until(lambda: all(_state(pid) in ("gone", "Z") for pid in pids), within=10)
        # The pool starts a fresh process for the next job.
        assert isinstance(await executors.run(quick, item()), ProcessingSuccess)
        assert not pids & _worker_pids(executors, "P")
    finally:
        executors.close()


def _worker_pids(executors: PoolExecutors, pool: str) -> set[int]:
    """The pool's live worker processes (the executor's own map, as execution.py reads)."""
    process_pool = executors._pools.get(pool)
    executor = process_pool._executor if process_pool is not None else None
    return set(getattr(executor, "_processes", None) or {})


def _state(pid: int) -> str:
    """The process's state letter from /proc, or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        # Reaped between opening its stat file and reading it (ESRCH).
        return "gone"
