"""The hourly cleanup, one runner at a time across replicas (store lease `media_cleanup`).

- Jobs older than the stale bound in ACTIVE or HOLDING: their placeholder is resolved
  (with the persisted result if there is one, else a timeout marker) when the bot is
  active — BOT_NOT_ACTIVE and NOT_FOUND are fine — and the job is dead-lettered to
  failed with its staged file deleted. Needs no active bot.
- Staged files no job references, older than the grace period, are deleted; so are
  `.part` leftovers of interrupted downloads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from services.common.store import JobCollection, JobStatus, MediaJob, Store
from services.media_svc.delivery import DeliveryRejectedError, DeliveryStatus, QueueDelivery
from services.media_svc.metrics import MediaMetrics
from services.media_svc.processors.base import timeout_marker
from services.media_svc.staging import StagingDirectory
from services.media_svc.worker import Clock, compose_content, utc_now

log = logging.getLogger(__name__)

LEASE_NAME = "media_cleanup"


@dataclass(frozen=True, slots=True)
class CleanupReport:
    stale_failed: int = 0
    stale_resolved: int = 0
    orphans_deleted: int = 0
    partials_deleted: int = 0


class Cleanup:
    def __init__(
        self,
        *,
        store: Store,
        staging: StagingDirectory,
        delivery: QueueDelivery,
        metrics: MediaMetrics,
        stale_after_seconds: float,
        orphan_grace_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._staging = staging
        self._delivery = delivery
        self._metrics = metrics
        self._stale_after = stale_after_seconds
        self._grace = orphan_grace_seconds
        self._clock = clock

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
        stale_failed = stale_resolved = 0
        for collection in (JobCollection.ACTIVE, JobCollection.HOLDING):
            for job in await self._store.jobs_older_than(collection, cutoff):
                resolved, failed = await self._expire(job)
                stale_resolved += resolved
                stale_failed += failed
        orphans, partials = await self._delete_unreferenced_files()
        report = CleanupReport(stale_failed, stale_resolved, orphans, partials)
        for action, count in (
            ("stale_failed", report.stale_failed),
            ("stale_resolved", report.stale_resolved),
            ("orphan_deleted", report.orphans_deleted),
            ("partial_deleted", report.partials_deleted),
        ):
            if count:
                self._metrics.cleanup_actions.labels(action).inc(count)
        log.info("cleanup: %s", report)
        return report

    async def _expire(self, job: MediaJob) -> tuple[int, int]:
        completed = job.status is JobStatus.COMPLETED and job.result is not None
        content = (
            job.result
            if completed and job.result is not None
            else compose_content(timeout_marker(job), job.caption)
        )
        resolved = 0
        try:
            # Deliver first: a crash before the move leaves the job for the next run,
            # and a repeated UpdateByMediaId is harmless.
            status = await self._delivery.update(job, content)
            resolved = int(status is DeliveryStatus.UPDATED)
        except DeliveryRejectedError as exc:
            log.error("cleanup: queue_svc refused %s: %s", job.media_processing_id, exc)
        age = (self._clock() - job.created_at).total_seconds()
        reason = f"stale: {job.status.value} for {age:.0f}s (bound {self._stale_after:.0f}s)"
        failed = await self._store.fail_job(job.media_processing_id, reason)
        if failed:
            log.warning(
                "cleanup: dead-lettered %s of bot %s (%s)",
                job.media_processing_id,
                job.bot_id,
                reason,
            )
        if job.has_staged_file:
            self._staging.delete(job.media_processing_id)
        return resolved, int(failed)

    async def _delete_unreferenced_files(self) -> tuple[int, int]:
        entries = [e for e in self._staging.entries() if e.age_seconds >= self._grace]
        partials = sum(1 for e in entries if e.partial and self._staging.remove_entry(e))
        named = {e.media_processing_id: e for e in entries if e.media_processing_id is not None}
        referenced = await self._store.existing_job_ids(list(named)) if named else set()
        orphans = 0
        for media_id, entry in named.items():
            if media_id not in referenced and self._staging.remove_entry(entry):
                orphans += 1
                log.info("cleanup: deleted unreferenced staged file %s", entry.path)
        return orphans, partials
