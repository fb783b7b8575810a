"""One pool per processor definition, each with its own concurrency limit.

A single dispatcher claims for every pool that has a free slot (one atomic claim over
those pools, oldest job first), so an idle replica makes one store query per wake-up
rather than one per pool. Under a backlog one claim takes up to `MAX_CLAIM_BATCH` jobs
per pool (never more than the pool's free slots) in one store round trip. When nothing
is claimable it waits on the store's wake-up signal (`wait_for_jobs`), with polling only
as the fallback timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.media_jobs import JobLifecycleStore, MediaJobs
from services.common.store import ClaimedJob
from services.media_svc.definitions import ActivePool, LoadedDefinitions
from services.media_svc.metrics import MediaMetrics
from services.media_svc.worker import JobWorker, utc_now

log = logging.getLogger(__name__)

# Jobs one claim may take per pool. Under a burst, a claim per job cost a store round trip
# (a thread hop and a commit) per job; a batch fills the free slots in a few, and every
# job taken has a free slot at once, so a batch holds back no job another replica could run.
MAX_CLAIM_BATCH = 16


@dataclass(frozen=True, slots=True)
class WorkerPool:
    active: ActivePool

    @property
    def name(self) -> str:
        return self.active.definition.name

    @property
    def concurrency(self) -> int:
        return self.active.definition.concurrency


class PoolSet:
    def __init__(
        self,
        *,
        store: JobLifecycleStore,
        worker: JobWorker,
        metrics: MediaMetrics,
        worker_id: str,
        lease_seconds: float,
        poll_fallback_seconds: float,
        claimers: int = 1,
        claimable: Callable[[str], bool] = lambda pool: True,
    ) -> None:
        self._store = store
        self._jobs = MediaJobs(store)
        self._worker = worker
        self._metrics = metrics
        self._worker_id = worker_id
        self._lease = lease_seconds
        self._poll = poll_fallback_seconds
        self._claimers = claimers
        # A pool whose engines are not loaded (services.media_svc.readiness) takes no job.
        self._claimable = claimable
        # Per pool name: the slots that claims in flight have asked for.
        self._reserved: dict[str, int] = {}
        self._pools: dict[str, WorkerPool] = {}
        # Per pool name, so counts survive a table swap while jobs run.
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def pools(self) -> Sequence[WorkerPool]:
        return list(self._pools.values())

    def apply(self, loaded: LoadedDefinitions, served: Sequence[ActivePool] | None = None) -> None:
        """Puts a new table in force, claiming only from the `served` pools (default:
        all). Running jobs finish on the processor they started with; a removed pool
        takes no new jobs (its pending ones were re-routed)."""
        active = loaded.pools if served is None else served
        self._pools = {pool.definition.name: WorkerPool(pool) for pool in active}
        self._wake.set()

    async def run(self) -> None:
        """Claims and dispatches until `stop_claiming()`. One claim loop by default: a
        claim fills every free slot (up to MAX_CLAIM_BATCH per pool) in one round trip,
        and every commit in the database wakes each loop waiting for jobs, so more loops
        mostly ran more empty claims."""
        loops = [asyncio.create_task(self._claim_loop()) for _ in range(self._claimers)]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            # A claim in flight holds the slots it asks for in each pool it names (it may
            # get them all): a pool never runs more than its concurrency.
            slots = {
                p.name: min(free, MAX_CLAIM_BATCH)
                for p in self._pools.values()
                if (free := self._free_slots(p)) > 0 and self._claimable(p.name)
            }
            claimed: list[ClaimedJob] = []
            if slots:
                self._reserve(slots, 1)
                try:
                    claimed = await self._jobs.claim_batch(slots, self._worker_id, self._lease)
                finally:
                    self._reserve(slots, -1)
            if not claimed:
                await self._idle(bool(slots))
                continue
            for one in claimed:
                self._dispatch(one)

    def _free_slots(self, pool: WorkerPool) -> int:
        return pool.concurrency - self.in_flight(pool.name) - self._reserved.get(pool.name, 0)

    def _reserve(self, slots: dict[str, int], sign: int) -> None:
        for name, count in slots.items():
            self._reserved[name] = self._reserved.get(name, 0) + sign * count

    async def _idle(self, wait_for_store: bool) -> None:
        if self._stopping:
            return
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if wait_for_store:
            waiters.append(asyncio.ensure_future(self._store.wait_for_jobs(self._poll)))
        try:
            await asyncio.wait(waiters, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    def _dispatch(self, claimed: ClaimedJob) -> None:
        pool = self._pools.get(claimed.job.pool)
        if pool is None:
            # The table changed between the claim and now; hand the job back to be re-routed.
            log.info(
                "claimed %s for removed pool %s; releasing it",
                claimed.job.media_processing_id,
                claimed.job.pool,
            )
            task = asyncio.create_task(self._release(claimed))
        else:
            self._in_flight[pool.name] = self.in_flight(pool.name) + 1
            task = asyncio.create_task(self._run_job(pool, claimed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, claimed: ClaimedJob) -> None:
        await self._jobs.release(
            claimed.job.media_processing_id, claimed.token, "pool removed", utc_now()
        )

    async def _run_job(self, pool: WorkerPool, claimed: ClaimedJob) -> None:
        outcome = "error"
        # The whole slot counts, delivery included: a slot is never busy unseen.
        gauge = self._metrics.in_flight.labels(pool.name)
        gauge.inc()
        try:
            outcome = await self._worker.run(pool.active, claimed)
        except asyncio.CancelledError:
            outcome = "released"
            raise
        except Exception:
            # The job stays in the store (its lease expires, or its result is redelivered).
            log.exception("job %s: unexpected error", claimed.job.media_processing_id)
        finally:
            gauge.dec()
            self._in_flight[pool.name] -= 1
            self._metrics.jobs.labels(pool.name, outcome).inc()
            self._wake.set()

    def wake(self) -> None:
        """Looks for work now (a pool became claimable)."""
        self._wake.set()

    def in_flight(self, pool: str) -> int:
        return self._in_flight.get(pool, 0)

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    async def drain(self, grace_seconds: float) -> None:
        """Waits for running jobs up to the grace period, then cancels the rest (each
        cancelled job releases itself back to pending)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        if pending:
            log.warning(
                "shutdown: releasing %d jobs still running after the grace period", len(pending)
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
