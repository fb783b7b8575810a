"""The media job lifecycle, in the one required order (SPEC section 4, review 2 P1):

claim → process (lease renewed meanwhile) → persist the result (active, else holding;
refused once the lease is lost) → UpdateByMediaId → delete the job and its staged file,
or move it to failed. A crash at any step leaves the job where a restart or another
replica picks it up: an expired lease makes it claimable again, a persisted result is
delivered again by the redelivery sweep or by queue_svc's StartBot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common.logs import log_fields
from services.common.media_jobs import JobLifecycleStore, MediaJobs
from services.common.store import (
    MAX_CLAIM_DELAY_MS,
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    MediaJob,
)
from services.media_svc.backoff import backoff_delay
from services.media_svc.definitions import ActivePool
from services.media_svc.delivery import DeliveryRejectedError, DeliveryStatus, QueueDelivery
from services.media_svc.execution import PoolExecutors
from services.media_svc.hooks import ClaimTrace, CrashHook
from services.media_svc.inputs import BotLanguages, RefusedInput, build_input, copy_staged
from services.media_svc.lease import LeaseKeeper
from services.media_svc.metrics import MediaMetrics
from services.media_svc.processors.base import (
    MISSING_FILE,
    ProcessingFailure,
    ProcessingProgress,
    ProcessingSuccess,
    TransientProcessingError,
    failed_marker,
)
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.staging import MediaStaging

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def job_log_fields(job: MediaJob) -> dict[str, str]:
    return {
        "bot_id": job.bot_id,
        "correspondent_id": job.correspondent_id,
        "media_processing_id": job.media_processing_id,
        "pool": job.pool,
    }


def compose_content(body: str, caption: str) -> str:
    """What replaces the placeholder: the processor's text (or failure marker), then the
    caption on its own line as `Caption: …` when the sender wrote one."""
    caption = caption.strip()
    return f"{body}\nCaption: {caption}" if caption else body


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    worker_id: str
    lease_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    # How often UpdateByMediaId is retried on NOT_FOUND (it may race StartBot recovery).
    not_found_retries: int = 3
    not_found_backoff_seconds: float = 0.2


class WorkerStore(JobLifecycleStore, Protocol):
    """The aggregates a worker uses: its jobs, and the bot's configuration (languages)."""


class JobWorker:
    """Runs one claimed job to its end; shared by every pool of the replica."""

    def __init__(
        self,
        *,
        store: WorkerStore,
        staging: MediaStaging,
        delivery: QueueDelivery,
        executor: PoolExecutors,
        metrics: MediaMetrics,
        settings: WorkerSettings,
        crash: CrashHook | None = None,
        trace: ClaimTrace | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._jobs = MediaJobs(store)
        self._staging = staging
        self._delivery = delivery
        self._executor = executor
        self._metrics = metrics
        self._settings = settings
        self._crash = crash or CrashHook(None)
        self._trace = trace or ClaimTrace(None)
        self._clock = clock
        self._languages = BotLanguages(store.get_bot_config)

    async def run(self, pool: ActivePool, claimed: ClaimedJob) -> str:
        with log_fields(**job_log_fields(claimed.job)):
            return await self._run(pool, claimed)

    async def _run(self, pool: ActivePool, claimed: ClaimedJob) -> str:
        """Processes a claimed job to the end; returns the outcome label for metrics."""
        job, token = claimed.job, claimed.token
        now = self._clock()
        self._crash.hit("after_claim")
        if token == 1:  # the job's first claim ever: the fence never resets
            self._metrics.pickup_seconds.labels(job.pool).observe(
                max(0.0, (now - job.created_at).total_seconds())
            )
        self._trace.claimed(job.media_processing_id, job.pool, token, job.created_at, now)
        processing = asyncio.create_task(self._process(pool, job, token))
        lease = LeaseKeeper(
            functools.partial(
                self._jobs.renew, job.media_processing_id, token, self._settings.lease_seconds
            ),
            self._settings.lease_seconds / 3,
            processing.cancel,
            job.media_processing_id,
        )
        try:
            # Shielded: a shutdown's cancellation reaches this run at once and the processing
            # is stopped below, explicitly; a lost lease cancels the processing (LeaseKeeper).
            outcome = await asyncio.shield(processing)
        except asyncio.CancelledError:
            await lease.stop()
            current = asyncio.current_task()
            if not lease.lost or (current is not None and current.cancelling()):
                # Shutdown past its grace period: hand the job back untouched for another run.
                await self._stop(processing)
                await asyncio.shield(
                    self._jobs.release(
                        job.media_processing_id, token, "released at shutdown", self._clock()
                    )
                )
                raise
            # The lease is gone: another worker may hold the job now. The run was stopped
            # (a blocking pool's processes are killed, as on a timeout); the fence refuses
            # anything it would still write.
            self._metrics.leases_lost.labels(job.pool).inc()
            log.warning(
                "lease of %s lost (token %d) while processing; run stopped",
                job.media_processing_id,
                token,
            )
            return "lease_lost"
        await lease.stop()
        if isinstance(outcome, str):
            return outcome
        media_result: str | None = None
        if isinstance(outcome, ProcessingSuccess):
            content, error = compose_content(outcome.text, job.caption), None
            media_result = outcome.media_result()
        else:
            content = compose_content(outcome.marker, job.caption)
            error = outcome.error
        where = await self._jobs.record_result(
            job.media_processing_id, token, content, error, media_result
        )
        if where is None:
            self._metrics.leases_lost.labels(job.pool).inc()
            await self._forget(job, "lease lost or job dead-lettered before its result was saved")
            return "lease_lost"
        self._crash.hit("after_persist")
        return await self.deliver(job, content, error, media_result)

    @staticmethod
    async def _stop(*tasks: asyncio.Task[object]) -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _process(
        self, pool: ActivePool, job: MediaJob, token: int
    ) -> ProcessingSuccess | ProcessingFailure | str:
        """The outcome, or the metrics label of a run that ended without one ("retried":
        released for a retry; "yielded", "lease_lost": see `_run_parts`).

        Attempts are counted by `job.attempts` (claims since the job was created or last
        requeued by an operator), not by the token, which never resets."""
        attempt = job.attempts
        max_attempts = pool.settings.max_attempts
        if attempt > max_attempts:
            # Claimed again and again without finishing: its workers died mid-run.
            log.error(
                "job %s was claimed %d times without finishing; giving up",
                job.media_processing_id,
                attempt,
            )
            return ProcessingFailure("failed", failed_marker(job.media_kind))
        languages = await self._languages.of(job.bot_id)
        copy = await copy_staged(job, self._staging, pool.spec.limits)
        if isinstance(copy, RefusedInput):
            if copy.failure.reason != MISSING_FILE or attempt >= max_attempts:
                return copy.failure
            # The bytes are durable before Node sends the frame, but a shared volume may
            # show a file to this node later: retried like a transient error.
            await self._retry_later(job, token, attempt, "staged file missing")
            return "retried"
        item = build_input(job, copy, pool.spec.limits, languages)
        self._crash.hit("during_processing")
        started = time.perf_counter()
        try:
            return await self._run_parts(pool, job, token, item)
        except TransientProcessingError as exc:
            if attempt >= max_attempts:
                log.warning(
                    "job %s failed on its last attempt (%d): %s",
                    job.media_processing_id,
                    attempt,
                    exc,
                )
                return ProcessingFailure("failed", failed_marker(job.media_kind), str(exc))
            await self._retry_later(job, token, attempt, f"transient: {exc}")
            return "retried"
        finally:
            self._metrics.processing_seconds.labels(job.pool).observe(time.perf_counter() - started)
            if copy is not None:
                await asyncio.shield(self._staging.release_copy(copy))

    async def _run_parts(
        self, pool: ActivePool, job: MediaJob, token: int, item: ProcessorInput
    ) -> ProcessingSuccess | ProcessingFailure | str:
        """Runs the processor; a job done in parts (long audio) runs part after part.
        Each part's progress is saved with the job before the next part starts, and when
        a cheaper job of the pool waits, the store gives this one back in that same write
        ("yielded": the next claim resumes from the checkpoint)."""
        outcome = await self._executor.run(pool, item)
        while isinstance(outcome, ProcessingProgress):
            # A share outside [0, 1] (NaN included) counts as all the work left.
            left = outcome.remaining if 0.0 <= outcome.remaining <= 1.0 else 1.0
            remaining = min(MAX_CLAIM_DELAY_MS, round(job.claim_delay_ms * left))
            saved = await self._jobs.checkpoint(
                job.media_processing_id, token, outcome.checkpoint, remaining
            )
            if saved is CheckpointOutcome.LOST:
                self._metrics.leases_lost.labels(job.pool).inc()
                log.warning(
                    "lease of %s lost between two parts; run stopped", job.media_processing_id
                )
                return "lease_lost"
            if saved is CheckpointOutcome.YIELDED:
                log.info(
                    "job %s gave its slot to a cheaper job (%.0f%% left)",
                    job.media_processing_id,
                    outcome.remaining * 100,
                )
                return "yielded"
            self._crash.hit("after_checkpoint")
            item = replace(item, checkpoint=outcome.checkpoint)
            outcome = await self._executor.run(pool, item)
        return outcome

    async def _retry_later(self, job: MediaJob, token: int, attempt: int, why: str) -> None:
        delay = backoff_delay(
            attempt, self._settings.backoff_base_seconds, self._settings.backoff_max_seconds
        )
        released = await self._jobs.release(
            job.media_processing_id, token, why, self._clock() + timedelta(seconds=delay)
        )
        self._metrics.retries.labels(job.pool).inc()
        log.info(
            "job %s attempt %d failed (%s); retry in %.2fs%s",
            job.media_processing_id,
            attempt,
            why,
            delay,
            "" if released else " (lease already lost)",
        )

    async def deliver(
        self, job: MediaJob, content: str, error: str | None, media_result: str | None = None
    ) -> str:
        with log_fields(**job_log_fields(job)):
            return await self._deliver(job, content, error, media_result)

    async def _deliver(
        self, job: MediaJob, content: str, error: str | None, media_result: str | None
    ) -> str:
        """UpdateByMediaId for a persisted result, then the job's final move.

        One attempt: when the bot's shard does not answer, the result stays persisted
        and the slot is free at once; the redelivery loop delivers it later."""
        try:
            status = await self._delivery.update(job, content, media_result)
            for attempt in range(1, self._settings.not_found_retries + 1):
                if status is not DeliveryStatus.NOT_FOUND:
                    break
                # The placeholder may be re-injected by a StartBot running right now.
                await asyncio.sleep(self._settings.not_found_backoff_seconds * attempt)
                status = await self._delivery.update(job, content, media_result)
        except DeliveryRejectedError as exc:
            return await self._deliver_marker_instead(job, exc)
        self._crash.hit("after_deliver")
        if status is DeliveryStatus.UPDATED:
            await self._jobs.end_delivered(job.media_processing_id, error)
            await self._delete_file(job)
            return "delivered" if error is None else "failed"
        if status is DeliveryStatus.UNREACHABLE:
            log.info(
                "result of %s kept for the redelivery loop: bot %s's queue_svc shard did not"
                " answer",
                job.media_processing_id,
                job.bot_id,
            )
            return "deferred"
        if status is DeliveryStatus.BOT_NOT_ACTIVE:
            log.info(
                "bot %s not active: result of %s kept for its next start",
                job.bot_id,
                job.media_processing_id,
            )
            return "held"
        log.warning(
            "no placeholder for %s in bot %s / %s; the result stays persisted for recovery",
            job.media_processing_id,
            job.bot_id,
            job.correspondent_id,
        )
        return "undelivered"

    async def _deliver_marker_instead(self, job: MediaJob, refused: DeliveryRejectedError) -> str:
        """queue_svc refused the result itself: the placeholder is resolved with the
        failure marker (the one text queue_svc always takes) rather than left pending;
        only when that fails too, or the placeholder is gone, the job is dead-lettered."""
        log.error("queue_svc refused the result of %s: %s", job.media_processing_id, refused)
        reason = f"delivery rejected: {refused}"
        try:
            status: DeliveryStatus | None = await self._delivery.update(
                job, failed_marker(job.media_kind)
            )
        except DeliveryRejectedError as again:
            log.error(
                "queue_svc refused the failure marker of %s too: %s", job.media_processing_id, again
            )
            status = None
        if status is DeliveryStatus.UPDATED:
            await self._jobs.end_delivered(job.media_processing_id, reason)
            await self._delete_file(job)
            return "failed"
        if status in (DeliveryStatus.UNREACHABLE, DeliveryStatus.BOT_NOT_ACTIVE):
            # Persisted as it is: the next delivery is refused again and lands here.
            return "deferred" if status is DeliveryStatus.UNREACHABLE else "held"
        await self._jobs.dead_letter(job.media_processing_id, reason)
        await self._delete_file(job)
        return "failed"

    async def redeliver_stranded(
        self, older_than_seconds: float, page_size: int = 100, max_pages: int = 20
    ) -> int:
        """Delivers completed results left in ACTIVE (a crash between persist and
        deliver, or a delivery attempt that found the bot's shard unreachable), least
        recently changed first. Each shard has its own backoff (QueueDelivery): a shard
        that is down delays only its own bots' results.

        Results of bots that are not active stay where they are until the bot starts, so
        the sweep pages past them (asking queue_svc once per bot per sweep) instead of
        letting them hide newer stranded results.
        """
        cutoff = self._clock() - timedelta(seconds=older_than_seconds)
        inactive: set[str] = set()
        retried = kept = 0
        for _ in range(max_pages):
            page = await self._store.list_completed_jobs(
                JobCollection.ACTIVE, cutoff, limit=page_size, offset=kept
            )
            for job in page:
                if (
                    job.result is None
                    or job.bot_id in inactive
                    or not self._delivery.reachable(job.bot_id)
                ):
                    # A shard backing off is skipped: its bots' results wait, the other
                    # shards' go out in this same sweep.
                    kept += 1
                    continue
                outcome = await self.deliver(job, job.result, job.error, job.media_result)
                self._metrics.jobs.labels(job.pool, outcome).inc()
                retried += 1
                if outcome in ("held", "undelivered", "deferred"):
                    kept += 1
                if outcome == "held":
                    inactive.add(job.bot_id)
            if len(page) < page_size:
                break
        if retried:
            log.info("redelivery sweep: %d stranded results retried", retried)
        return retried

    async def _forget(self, job: MediaJob, why: str) -> None:
        log.warning("result of %s not saved: %s", job.media_processing_id, why)
        if not await self._store.existing_job_ids([job.media_processing_id]):
            await self._delete_file(job)

    async def _delete_file(self, job: MediaJob) -> None:
        if job.has_staged_file:
            await self._staging.delete(job)
