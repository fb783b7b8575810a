"""Runs processors without blocking the event loop, under each pool's limits.

Async processors run on the loop under the pool's wall-clock limit. Blocking ones run
in their pool's own ProcessPoolExecutor, sized by the pool's concurrency, whose
processes load the engine once (`worker_process.initialize`) and run under the pool's
memory cap. A running future cannot be cancelled, so a run past its limit kills that
pool's processes, and only those: other pools keep their processes and loaded engines.
Runs of the same pool caught in the kill see a broken pool and are retried.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from services.common.errors import ChatbotError
from services.media_svc import worker_process
from services.media_svc.definitions import ActivePool, AsyncSpec, BlockingSpec
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    TransientProcessingError,
    timeout_marker,
)
from services.media_svc.processors.contract import ProcessorInput

log = logging.getLogger(__name__)


class WarmUpError(ChatbotError):
    """A pool's worker processes could not load its engine (the reason is the message)."""


MIB = 1024 * 1024


class _ProcessPool:
    """The worker processes of one blocking pool definition."""

    def __init__(self, name: str, spec: BlockingSpec, processes: int, memory_limit_mb: int) -> None:
        self.name = name
        self.spec = spec
        self.processes = processes
        self.memory_limit_mb = memory_limit_mb
        self._executor: ProcessPoolExecutor | None = None

    def matches(self, pool: ActivePool) -> bool:
        return (
            self.spec == pool.spec
            and self.processes == pool.definition.concurrency
            and self.memory_limit_mb == pool.settings.memory_limit_mb
        )

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_process.initialize,
                initargs=(self.spec.processor, self.spec.options, self.memory_limit_mb * MIB),
            )
        return self._executor

    def kill(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # The private map is the only handle on the children; a stuck one must die.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class PoolExecutors:
    """One executor per pool, replaced when the pool's definition changes."""

    def __init__(self) -> None:
        self._pools: dict[str, _ProcessPool] = {}

    def _process_pool(self, pool: ActivePool, spec: BlockingSpec) -> _ProcessPool:
        name = pool.definition.name
        current = self._pools.get(name)
        if current is None or not current.matches(pool):
            if current is not None:
                current.close()
            current = _ProcessPool(
                name, spec, pool.definition.concurrency, pool.settings.memory_limit_mb
            )
            self._pools[name] = current
        return current

    def retain(self, pools: Iterable[ActivePool]) -> None:
        """Closes the processes of pools that left the table or changed (running jobs
        of a closed pool finish first: shutdown does not wait, but does not kill)."""
        wanted = {p.definition.name: p for p in pools}
        for name, process_pool in list(self._pools.items()):
            pool = wanted.get(name)
            if pool is None or not process_pool.matches(pool):
                process_pool.close()
                del self._pools[name]

    async def warm(self, pool: ActivePool, rounds: int = 50) -> str:
        """Starts a blocking pool's processes and has each load its engine, before the
        first job (so the first voice note does not pay for the model load, and
        readiness means every process can run a job). Returns a summary; raises
        WarmUpError with the reason when a process cannot load the engine."""
        if not isinstance(pool.spec, BlockingSpec):
            return "no worker processes"
        process_pool = self._process_pool(pool, pool.spec)
        executor = process_pool.executor()
        wanted = pool.definition.concurrency
        loop = asyncio.get_running_loop()
        seen: dict[int, float] = {}
        for _ in range(rounds):
            # As many warm-ups as processes: the executor starts that many, and each
            # warm-up holds its process briefly so they spread. A process still loading
            # is reached by a later round.
            runs = [loop.run_in_executor(executor, worker_process.warm) for _ in range(wanted)]
            try:
                seen.update(await asyncio.gather(*runs))
            except TransientProcessingError as exc:
                raise WarmUpError(str(exc)) from exc
            except BrokenProcessPool as exc:
                process_pool.kill()
                raise WarmUpError(f"a worker process died while loading: {exc}") from exc
            live = set(getattr(executor, "_processes", {}))
            if len(seen) >= wanted and live <= set(seen):
                slowest = max(seen.values())
                return f"{len(seen)} processes, engine loaded in {slowest:.2f}s at most"
        raise WarmUpError(f"only {len(seen)} of {wanted} worker processes answered")

    async def run(self, pool: ActivePool, item: ProcessorInput) -> ProcessingOutcome:
        """The outcome, a `timed_out` failure past the pool's limit; raises
        TransientProcessingError for a crash of the processor or its process."""
        timeout = pool.settings.timeout_seconds
        try:
            spec = pool.spec
            if isinstance(spec, AsyncSpec):
                async with asyncio.timeout(timeout):
                    return await spec.processor.process(item)
            process_pool = self._process_pool(pool, spec)
            submitted = process_pool.executor().submit(worker_process.run, item)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(submitted), timeout)
            except TimeoutError:
                log.warning(
                    "pool %s: a run exceeded %.1fs; killing this pool's processes",
                    pool.definition.name,
                    timeout,
                )
                process_pool.kill()
                raise
            except BrokenProcessPool:
                process_pool.kill()
                raise
            except asyncio.CancelledError:
                # The job's lease was lost (or shutdown ran out of grace): the run must
                # stop, and a running future cannot be cancelled.
                # Cancelling the awaitable cancels a job still queued; one running in a
                # process stays running until that process dies.
                if not submitted.done():
                    log.warning(
                        "pool %s: a run was cancelled; killing this pool's processes",
                        pool.definition.name,
                    )
                    process_pool.kill()
                raise
        except TimeoutError:
            return ProcessingFailure(reason="timed_out", marker=timeout_marker(item.media_kind))
        except TransientProcessingError:
            raise
        except BrokenProcessPool as exc:
            raise TransientProcessingError(f"processor process died: {exc}") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A processor bug or an engine crash: retried, then reported as a failure.
            log.exception("pool %s: processor crashed", pool.definition.name)
            raise TransientProcessingError(f"processor crashed: {exc!r}") from exc

    def close(self) -> None:
        for process_pool in self._pools.values():
            process_pool.close()
        self._pools.clear()
