"""The media-job lifecycle and the processor definitions document: the one owner of both.

Every state transition of a media job is a method of `MediaJobs`, so the rules of which
job may move where, and when, are read in one place; queue_svc and media_svc call these
methods and never move a job with the store's job primitives themselves (they still read
jobs from the store). Who calls which transition is ARCHITECTURE.md's table.

    create ──► ACTIVE pending ──claim──► processing ──record_result──► completed
                  ▲  │ ▲                    │ release (retry, shutdown),    │
                  │  │ │                    │ checkpoint (yield a slot)     │
       reactivate │  │ └────────────────────┘                              │ end_delivered
                  │  ▼ park                                                ▼
               HOLDING (bot stopped; the same states)            deleted, or FAILED
                                                                          │ requeue
                                             FAILED ──► ACTIVE or HOLDING ◄┘

Stale jobs end through `dead_letter` (→ FAILED) or `time_out_in_place` (completed with a
timeout marker where they are, for the bot's next start); `reroute_pending` points
pending jobs at another pool when the definitions change.

The definitions document (`_mediaProcessorDefinitions` in `bot_configurations`) is read
only through `DefinitionsDocument`, which seeds the built-in table when it is missing, so
queue_svc (routing a new job) and media_svc (running the pools) always agree on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from services.common.errors import InvalidInputError, NotFoundError, PreconditionError
from services.common.job_cost import seconds_per_mib
from services.common.routing import ProcessorDefinitions, default_definitions
from services.common.store import (
    BotConfigStore,
    CheckpointOutcome,
    ClaimedJob,
    DefinitionsStore,
    JobCollection,
    MediaJob,
    MediaJobStore,
    NewMediaJob,
)
from services.common.validation import is_uuid4
from services.common.vocabulary import RouteKey

log = logging.getLogger(__name__)


class DefinitionsDocument:
    """The stored routing table, as a document; parsing and validating it is the
    reader's (queue_svc needs the routes, media_svc also the processors' options)."""

    def __init__(
        self,
        store: DefinitionsStore,
        defaults: Callable[[], ProcessorDefinitions] = default_definitions,
    ) -> None:
        self._store = store
        self._defaults = defaults

    def default_document(self) -> dict[str, Any]:
        return self._defaults().to_document()

    async def seed(self) -> bool:
        """Stores the built-in table when there is none; True when this call stored it.
        Idempotent across replicas and services: the first writer wins."""
        seeded = await self._store.seed_processor_definitions(self.default_document())
        if seeded:
            log.info("seeded the default processor definitions")
        return seeded

    async def read(self) -> dict[str, Any]:
        """The stored document without the store's `_id`. A missing one (never seeded, or
        deleted by an operator) is seeded first and read back, so whoever reads it after
        a concurrent seed gets the winner's document, never a private copy."""
        document = await self._store.get_processor_definitions()
        if document is None:
            log.warning("processor definitions document missing; seeding the defaults")
            await self.seed()
            document = await self._store.get_processor_definitions()
            if document is None:  # deleted again between the two calls
                return self.default_document()
        return {key: value for key, value in document.items() if key != "_id"}


class JobLifecycleStore(MediaJobStore, BotConfigStore, Protocol):
    """The jobs, and the registry of active bots a requeue picks its collection by."""


class MediaJobs:
    def __init__(self, store: JobLifecycleStore) -> None:
        self._store = store

    # queue_svc: InjectPlaceholder, before the placeholder is queued.
    async def create(self, job: NewMediaJob) -> bool:
        """False (and no change) when the id exists already: a retried injection."""
        return await self._store.create_job(job)

    # queue_svc: StartBot and StopBot.
    async def reactivate_bot(self, bot_id: str) -> int:
        """HOLDING → ACTIVE, before the started bot's jobs are restored."""
        return await self._store.move_bot_jobs(bot_id, JobCollection.HOLDING, JobCollection.ACTIVE)

    async def park_bot(self, bot_id: str) -> int:
        """ACTIVE → HOLDING once the stopping bot's queues are drained."""
        return await self._store.move_bot_jobs(bot_id, JobCollection.ACTIVE, JobCollection.HOLDING)

    # media_svc: a pool's claim, and the worker's run of the claimed job.
    async def claim(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        return await self._store.claim_job(pools, worker_id, lease_seconds)

    async def claim_batch(
        self, slots: Mapping[str, int], worker_id: str, lease_seconds: float
    ) -> list[ClaimedJob]:
        """Up to `slots[pool]` jobs of each pool, in claim order, in one store round trip."""
        return await self._store.claim_jobs(slots, worker_id, lease_seconds)

    async def renew(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        return await self._store.renew_lease(media_processing_id, token, lease_seconds)

    async def release(
        self, media_processing_id: str, token: int, why: str, retry_at: datetime
    ) -> bool:
        """Back to pending for another claim from `retry_at` (a retry, or a shutdown)."""
        return await self._store.release_job(media_processing_id, token, why, retry_at)

    async def checkpoint(
        self,
        media_processing_id: str,
        token: int,
        checkpoint: str,
        remaining_delay_ms: int | None = None,
    ) -> CheckpointOutcome:
        """Saves a job's progress before the next part; with `remaining_delay_ms`, gives
        the job back (pending, resumed from the checkpoint) when a cheaper job of its pool
        waits."""
        return await self._store.checkpoint_job(
            media_processing_id, token, checkpoint, remaining_delay_ms
        )

    async def record_result(
        self,
        media_processing_id: str,
        token: int,
        content: str,
        error: str | None,
        media_result: str | None = None,
    ) -> JobCollection | None:
        """Persists the result (with its typed values) before it is delivered; None once
        the claim is lost."""
        return await self._store.complete_job(
            media_processing_id, token, content, error, media_result
        )

    # The end of a job whose result is durable in its bot's queue: media_svc's worker
    # after UpdateByMediaId, and queue_svc's StartBot for a result applied at start.
    async def end_delivered(self, media_processing_id: str, error: str | None) -> bool:
        """A success is deleted; a failure (a marker, a stale timeout) moves to FAILED so
        operators still see it and can requeue it. True when this call ended the job."""
        if not error:
            return await self._store.delete_job(media_processing_id)
        return await self._store.fail_job(media_processing_id, error)

    async def dead_letter(self, media_processing_id: str, reason: str) -> bool:
        """→ FAILED without a result delivered: refused by queue_svc, or stale."""
        return await self._store.fail_job(media_processing_id, reason)

    async def time_out_in_place(self, media_processing_id: str, content: str, error: str) -> bool:
        """A stale job of a stopped bot becomes its own timeout result where it is, fenced
        against a worker still holding it; the bot's next StartBot applies it."""
        return await self._store.resolve_stale_job(media_processing_id, content, error)

    # media_svc: after the definitions changed.
    async def reroute_pending(self, definitions: ProcessorDefinitions) -> int:
        """Points pending jobs whose route now resolves to another pool at that pool, in
        that pool's claim order (their cost recomputed with its `seconds_per_mib`); a
        route key this version cannot read goes to the fallback pool."""
        moved = 0
        for route, pool in (await self._store.pending_routes()).items():
            key = RouteKey.parse(route)
            target = definitions.route(key) if key else definitions.fallback_pool.name
            if target != pool:
                # The new pool's cost per MiB orders the moved jobs among its own.
                rate = seconds_per_mib(definitions.pool(target))
                count = await self._store.set_pool_for_route(route, target, rate)
                moved += count
                log.info(
                    "re-routed %d pending jobs of route %s: %s → %s", count, route, pool, target
                )
        return moved

    # media_svc: the operator's RequeueFailedJob.
    async def requeue(
        self, media_processing_id: str, staged_file_exists: Callable[[str], Awaitable[bool]]
    ) -> JobCollection:
        """FAILED → ACTIVE when the bot is in the registry of active bots, else HOLDING
        (moved to ACTIVE by the bot's next StartBot)."""
        if not is_uuid4(media_processing_id):
            raise InvalidInputError(
                f"media_processing_id: must be a lower-case UUID4, got {media_processing_id!r}"
            )
        found = await self._store.get_job(media_processing_id)
        if found is None or found[0] is not JobCollection.FAILED:
            raise NotFoundError(f"no failed job {media_processing_id}")
        job: MediaJob = found[1]
        if job.has_staged_file and not await staged_file_exists(media_processing_id):
            raise PreconditionError(
                f"the staged file of {media_processing_id} is gone (failed jobs' files are "
                "deleted); it cannot be processed again"
            )
        active = job.bot_id in await self._store.active_bots()
        target = JobCollection.ACTIVE if active else JobCollection.HOLDING
        if not await self._store.requeue_failed_job(media_processing_id, target):
            raise NotFoundError(f"no failed job {media_processing_id} (requeued concurrently?)")
        log.info("operator requeued %s into %s", media_processing_id, target.value)
        return target
