"""Runs processors without blocking the event loop, under a wall-clock limit.

CPU-bound processors run in a shared ProcessPoolExecutor (spawn context: no inherited
event loop, sockets or locks). When one overruns its limit the pool is torn down and its
processes killed, because a running future cannot be cancelled; the other runs in that
pool at that moment see a broken pool and are retried as transient errors.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from services.common.store import MediaJob
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    Processor,
    TransientProcessingError,
    timeout_marker,
)
from services.media_svc.processors.registry import ProcessorFactory

log = logging.getLogger(__name__)


def _run_blocking(
    factory: ProcessorFactory, options: Mapping[str, Any], job: MediaJob, path: Path | None
) -> ProcessingOutcome:
    """Entry point inside the worker process: rebuild the processor and run it."""
    return factory(options).process_blocking(job, path)


class ProcessorExecutor:
    def __init__(self, processes: int, timeout_seconds: float) -> None:
        self._processes = processes or os.cpu_count() or 1
        self._timeout = timeout_seconds
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The private map is the only handle on the children; a stuck one must die.
        processes = list(getattr(pool, "_processes", {}).values())
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(
        self,
        factory: ProcessorFactory,
        processor: Processor,
        job: MediaJob,
        staged_file: Path | None,
    ) -> ProcessingOutcome:
        """The outcome, a `timed_out` failure past the limit; raises
        TransientProcessingError for a crash of the processor or its process."""
        try:
            if processor.cpu_bound:
                future = asyncio.get_running_loop().run_in_executor(
                    self._executor(),
                    _run_blocking,
                    factory,
                    processor.options,
                    job,
                    staged_file,
                )
                try:
                    return await asyncio.wait_for(future, self._timeout)
                except TimeoutError:
                    log.warning(
                        "processor run of %s exceeded %.1fs; killing its process pool",
                        job.media_processing_id,
                        self._timeout,
                    )
                    self._kill_pool()
                    raise
            async with asyncio.timeout(self._timeout):
                return await processor.process(job, staged_file)
        except TimeoutError:
            return ProcessingFailure(reason="timed_out", marker=timeout_marker(job))
        except TransientProcessingError:
            raise
        except BrokenProcessPool as exc:
            self._kill_pool()
            raise TransientProcessingError(f"processor process died: {exc}") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A processor bug or an engine crash: retried, then reported as a failure.
            log.exception("processor crashed on %s", job.media_processing_id)
            raise TransientProcessingError(f"processor crashed: {exc!r}") from exc

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
