"""The hourly cleanup, one runner at a time across replicas (store lease `media_cleanup`).

- Jobs older than the stale bound in ACTIVE or HOLDING that are not completed: their
  placeholder is resolved with a timeout marker through UpdateByMediaId.
  UPDATED (or NOT_FOUND, or a refusal): the job is dead-lettered to failed and its staged
  file deleted, as ever. BOT_NOT_ACTIVE: the job is resolved in place instead
  (`resolve_stale_job`: completed with the marker, error `timed_out: …`, fence bumped so
  a worker still holding it is refused) and stays where it is; the bot's next StartBot
  applies it to the queue and moves it to failed. An accepted message is never lost
  because its bot was stopped for longer than the bound.
- Stale completed jobs (a result never delivered, or one resolved in place earlier):
  delivered when their bot is active again, then dead-lettered as above (with the job's
  own error when it has one); left alone, untouched, while the bot is inactive.
- A job whose bot's queue_svc shard does not answer is left as it is for the next run
  (`stale_unreachable`): one shard down never dead-letters its bots' jobs.
- Staged media no live job references (no job, or a failed one), older than the grace
  period, is deleted from the MediaStore (releasing the bot's bytes where the backend
  knows the bot: GridFS); so are partial writes an interrupted upload left. The grace
  period is how long a staged file may wait for its frame: Node writes the file, then
  keeps the frame in its outbox until the gateway acknowledges it, for as long as the
  gateway is unreachable (the outbox has no age limit). So the grace
  (MEDIA_ORPHAN_GRACE_SECONDS, default 7 days) is the longest gateway outage the
  platform rides out without losing media; a frame arriving later still becomes a
  "file missing" marker (after the worker's bounded retries), never a lost message.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from services.common.media_jobs import JobLifecycleStore, MediaJobs
from services.common.store import JobCollection, JobStatus, LeaseStore, MediaJob
from services.media_svc.delivery import DeliveryRejectedError, DeliveryStatus, QueueDelivery
from services.media_svc.metrics import MediaMetrics
from services.media_svc.processors.base import timeout_marker
from services.media_svc.staging import MediaStaging
from services.media_svc.worker import Clock, compose_content, utc_now

log = logging.getLogger(__name__)

LEASE_NAME = "media_cleanup"
# Stale jobs read per store call; a run pages through all of them.
PAGE_SIZE = 1000

_FAILED = "stale_failed"
_RESOLVED = "stale_resolved"
_TIMED_OUT = "stale_timed_out"
_HELD = "stale_held"
_UNREACHABLE = "stale_unreachable"


class CleanupStore(JobLifecycleStore, LeaseStore, Protocol):
    """The aggregates the sweep uses: the jobs, and a lease so one process sweeps."""


@dataclass(frozen=True, slots=True)
class CleanupReport:
    # Dead-lettered to failed.
    stale_failed: int = 0
    # Of those, the ones whose placeholder was resolved by this run (bot active).
    stale_resolved: int = 0
    # Resolved in place with the timeout marker (bot not active): kept for StartBot.
    stale_timed_out: int = 0
    # Completed and waiting for their inactive bot: left untouched.
    stale_held: int = 0
    orphans_deleted: int = 0
    partials_deleted: int = 0
    # Left for the next run: the bot's queue_svc shard did not answer.
    stale_unreachable: int = 0


class Cleanup:
    def __init__(
        self,
        *,
        store: CleanupStore,
        staging: MediaStaging,
        delivery: QueueDelivery,
        metrics: MediaMetrics,
        stale_after_seconds: float,
        orphan_grace_seconds: float,
        clock: Clock = utc_now,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._store = store
        self._jobs = MediaJobs(store)
        self._staging = staging
        self._delivery = delivery
        self._metrics = metrics
        self._stale_after = stale_after_seconds
        self._grace = orphan_grace_seconds
        self._clock = clock
        self._page_size = page_size

    async def run_if_leader(self, holder: str, lease_ttl_seconds: float) -> CleanupReport | None:
        """Runs when this replica holds (or takes) the cleanup lease; None otherwise.

        The lease is kept, not released, after a run: its holder stays the runner and the
        others find it taken until the holder stops renewing it (it died or shut down).
        """
        if not await self._store.acquire_lease(LEASE_NAME, holder, lease_ttl_seconds):
            log.debug("cleanup lease held by another replica")
            return None
        return await self.run_once()

    async def run_once(self) -> CleanupReport:
        now = self._clock()
        cutoff = now - timedelta(seconds=self._stale_after)
        counts: Counter[str] = Counter()
        # Bots that answered BOT_NOT_ACTIVE in this run: their other jobs need no call.
        inactive: set[str] = set()
        for collection in (JobCollection.ACTIVE, JobCollection.HOLDING):
            # Jobs still here after their turn (kept for StartBot, or moved by someone
            # else) stay at the head of the oldest-first order, so the next page starts
            # after them; dead-lettered ones are gone. Every job thus advances the scan.
            offset = 0
            while True:
                page = await self._store.jobs_older_than(
                    collection, cutoff, self._page_size, offset
                )
                for job in page:
                    actions = await self._expire(job, inactive)
                    counts.update(actions)
                    if _FAILED not in actions:
                        offset += 1
                if len(page) < self._page_size:
                    break
        orphans, partials = await self._delete_unreferenced_files()
        report = CleanupReport(
            counts[_FAILED],
            counts[_RESOLVED],
            counts[_TIMED_OUT],
            counts[_HELD],
            orphans,
            partials,
            counts[_UNREACHABLE],
        )
        for action, count in (
            (_FAILED, report.stale_failed),
            (_RESOLVED, report.stale_resolved),
            (_TIMED_OUT, report.stale_timed_out),
            (_HELD, report.stale_held),
            ("orphan_deleted", report.orphans_deleted),
            ("partial_deleted", report.partials_deleted),
            (_UNREACHABLE, report.stale_unreachable),
        ):
            if count:
                self._metrics.cleanup_actions.labels(action).inc(count)
        log.info("cleanup: %s", report)
        return report

    async def _expire(self, job: MediaJob, inactive: set[str]) -> list[str]:
        """One stale job to its end for this run; the report actions it counts for."""
        completed = job.status is JobStatus.COMPLETED
        if job.bot_id in inactive:
            status: DeliveryStatus | None = DeliveryStatus.BOT_NOT_ACTIVE
        else:
            content = (
                job.result
                if completed and job.result is not None
                else compose_content(timeout_marker(job.media_kind), job.caption)
            )
            status = await self._update(job, content)
        if status is DeliveryStatus.UNREACHABLE:
            # Nothing is decided without queue_svc: the next run tries again.
            return [_UNREACHABLE]
        if status is DeliveryStatus.BOT_NOT_ACTIVE:
            inactive.add(job.bot_id)
            if completed:
                log.debug("cleanup: %s waits for bot %s", job.media_processing_id, job.bot_id)
                return [_HELD]
            return [await self._time_out_in_place(job)]
        if status is DeliveryStatus.NOT_FOUND:
            log.warning(
                "cleanup: no placeholder for stale job %s (bot %s, correspondent %s, message"
                " %d); dead-lettering it",
                job.media_processing_id,
                job.bot_id,
                job.correspondent_id,
                job.message_id,
            )
        age = (self._clock() - job.created_at).total_seconds()
        reason = f"stale: {job.status.value} for {age:.0f}s (bound {self._stale_after:.0f}s)"
        if completed and job.error:
            reason = job.error  # the result's own failure (a marker, an earlier timeout)
        actions = [_RESOLVED] if status is DeliveryStatus.UPDATED else []
        if await self._jobs.dead_letter(job.media_processing_id, reason):
            actions.append(_FAILED)
            log.warning(
                "cleanup: dead-lettered %s of bot %s (%s)",
                job.media_processing_id,
                job.bot_id,
                reason,
            )
        if job.has_staged_file:
            await self._staging.delete(job)
        return actions

    async def _update(self, job: MediaJob, content: str) -> DeliveryStatus | None:
        """UpdateByMediaId first: a crash before the job's move leaves it for the next
        run, and a repeated call is harmless. None when queue_svc refused it for good."""
        try:
            return await self._delivery.update(job, content)
        except DeliveryRejectedError as exc:
            log.error("cleanup: queue_svc refused %s: %s", job.media_processing_id, exc)
            return None

    async def _time_out_in_place(self, job: MediaJob) -> str:
        """The bot is stopped: the job becomes its own timeout result, applied at the
        bot's next start, instead of a dead letter the queue would never see."""
        content = compose_content(timeout_marker(job.media_kind), job.caption)
        error = f"timed_out: not processed within {self._stale_after:.0f} s"
        if not await self._jobs.time_out_in_place(job.media_processing_id, content, error):
            # Completed by a worker meanwhile (delivered or held like any result) or gone.
            log.info("cleanup: %s finished meanwhile; left as it is", job.media_processing_id)
            return _HELD
        log.warning(
            "cleanup: %s of bot %s (correspondent %s) not processed within %.0f s while the"
            " bot is stopped: timeout marker kept for its next start",
            job.media_processing_id,
            job.bot_id,
            job.correspondent_id,
            self._stale_after,
        )
        if job.has_staged_file:
            await self._staging.delete(job)
        return _TIMED_OUT

    async def _delete_unreferenced_files(self) -> tuple[int, int]:
        entries = [e for e in await self._staging.entries() if e.age_seconds >= self._grace]
        partials = 0
        for entry in entries:
            if entry.partial and await self._staging.remove_entry(entry):
                partials += 1
        named = {e.media_processing_id: e for e in entries if e.media_processing_id is not None}
        referenced = await self._store.existing_job_ids(list(named)) if named else set()
        orphans = 0
        for media_id, entry in named.items():
            if media_id in referenced and not await self._dead_lettered(media_id):
                continue
            if await self._staging.remove_entry(entry):
                orphans += 1
                log.info("cleanup: deleted unreferenced staged media %s", media_id)
        return orphans, partials

    async def _dead_lettered(self, media_processing_id: str) -> bool:
        """A failed job keeps no staged file. Most lose it when they fail; a failure result
        applied by queue_svc's StartBot (which has no access to the staging directory)
        leaves it here."""
        found = await self._store.get_job(media_processing_id)
        return found is not None and found[0] is JobCollection.FAILED
