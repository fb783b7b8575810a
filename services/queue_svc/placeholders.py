"""A media message's placeholder: its media job first (durable), then the placeholder in
the correspondent queue; UpdateByMediaId resolves it with the processing result.

Every write is acknowledged only once it is durable: the job in the store before the
placeholder is appended, a resolved placeholder through ingestion's group commit.
"""

from __future__ import annotations

import logging
from typing import Protocol

from services.common.errors import InvalidInputError, UnavailableError
from services.common.job_cost import claim_delay_ms
from services.common.media_jobs import MediaJobs
from services.common.store import JobCollection, MediaJobStore, MessageStore, NewMediaJob
from services.common.vocabulary import MediaCondition, RouteKey
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.correspondent_queue import UpdateStatus
from services.queue_svc.ingestion import Ingestion, await_durable
from services.queue_svc.persisted_lookup import PersistedLookup
from services.queue_svc.processor_routing import ProcessorRouting
from services.queue_svc.recovery import RecoveryResult, restore_job
from services.queue_svc.service_types import PlaceholderRequest, UpdateResult, store_call

log = logging.getLogger("queue_svc.service")

# Node's reason for unstaged media is a diagnostic kept with the job; an oversized one is
# cut rather than refused, so the media message itself is never lost over it.
CONDITION_DETAIL_MAX_CHARS = 1_000


class PlaceholderStore(MediaJobStore, MessageStore, Protocol):
    """The media jobs (read here; created through MediaJobs), and the persisted provider
    ids that recognise a resent frame."""


class Placeholders:
    def __init__(
        self,
        store: PlaceholderStore,
        jobs: MediaJobs,
        routing: ProcessorRouting,
        ingestion: Ingestion,
        write_timeout_seconds: float,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._routing = routing
        self._ingestion = ingestion
        self._timeout = write_timeout_seconds
        self._persisted = PersistedLookup(store)

    async def inject(self, bot: BotQueues, request: PlaceholderRequest) -> tuple[int, bool]:
        """New media message: job first (durable), then the placeholder. (id, duplicate).
        `bot` is held active by the caller for the whole call."""
        extra = {
            "bot_id": request.bot_id,
            "correspondent_id": request.correspondent_id,
            "media_processing_id": request.media_processing_id,
        }
        known = bot.find_media(request.media_processing_id)
        if known is not None:
            if known[0] != request.correspondent_id:
                raise InvalidInputError(
                    "media_processing_id already belongs to another correspondent"
                )
            return known[1], True
        pid = request.message.provider_message_id
        if pid:
            seen, key = bot.lookup_provider_id(pid)
            if not seen:
                seen = await self._persisted.persisted(request.bot_id, pid)
                if seen:
                    bot.remember_persisted({pid})
            if seen:
                return (key.id if key is not None else 0), True
        route = RouteKey.of(request.condition, request.media.media_kind, request.media.mime_type)
        definitions = await self._routing.definitions()
        pool = definitions.route(route)
        message_id = bot.reserve_id(request.correspondent_id)
        m = request.message
        job = NewMediaJob(
            media_processing_id=request.media_processing_id,
            bot_id=request.bot_id,
            provider_name=bot.provider_name,
            correspondent_id=request.correspondent_id,
            message_id=message_id,
            sender=m.sender,
            source=m.source,
            originating_time=m.originating_time,
            provider_message_id=pid,
            caption=m.content,
            mime_type=request.media.mime_type,
            media_kind=request.media.media_kind,
            original_filename=request.media.original_filename,
            file_size=request.file_size,
            route=str(route),
            pool=pool,
            has_staged_file=request.condition is MediaCondition.STAGED,
            group_id=m.group_id,
            group_name=m.group_name,
            condition_detail=bounded_detail(request.condition_detail),
            details=m.details,
            claim_delay_ms=claim_delay_ms(definitions.pool(pool), request.file_size),
        )
        created = await store_call(self._jobs.create(job), "create_job")
        if not created:
            return await self._retried(bot, request)
        entry, _ = bot.inject_placeholder(
            request.correspondent_id, m, request.media, request.media_processing_id, message_id
        )
        log.info(
            "placeholder injected",
            extra={
                **extra,
                "message_id": entry.id,
                "pool": pool,
                "condition": request.condition.value,
                "condition_detail": request.condition_detail,
            },
        )
        return entry.id, False

    async def _retried(self, bot: BotQueues, request: PlaceholderRequest) -> tuple[int, bool]:
        """The job already exists (a retry after the first answer was lost, or a crash
        between creating the job and answering): make the queue match the job."""
        found = await store_call(self._store.get_job(request.media_processing_id), "get_job")
        if found is None:
            raise UnavailableError("the media job vanished while being recorded; retry")
        collection, job = found
        owner = bot.identities.canonical(job.correspondent_id)
        if job.bot_id != request.bot_id or owner != request.correspondent_id:
            raise InvalidInputError(
                "media_processing_id already belongs to another bot or correspondent"
            )
        if collection is not JobCollection.FAILED:
            result = RecoveryResult()
            restore_job(bot, job, result)
            for key in result.applied:
                self._ingestion.track(bot.bot_id, key)
            if result.applied:
                self._ingestion.notify()
                waits = [self._ingestion.durable(bot.bot_id, k) for k in result.applied]
                await await_durable(waits, self._timeout)
        return job.message_id, True

    async def resolve(
        self,
        bot: BotQueues,
        correspondent_id: str,
        media_processing_id: str,
        content: str,
        media_result: str | None = None,
    ) -> tuple[UpdateResult, int]:
        result, key = self.resolve_now(
            bot, correspondent_id, media_processing_id, content, media_result
        )
        if key is not None:
            future = self._ingestion.durable(bot.bot_id, key)
            await await_durable([future], self._timeout)
        return result

    def resolve_now(
        self,
        bot: BotQueues,
        correspondent_id: str,
        media_processing_id: str,
        content: str,
        media_result: str | None = None,
    ) -> tuple[tuple[UpdateResult, int], MessageKey | None]:
        """Resolves the placeholder in memory: the answer, and the key of the message to
        wait for before giving it (None: nothing to wait for)."""
        bot_id = bot.bot_id
        outcome = bot.resolve(correspondent_id, media_processing_id, content, media_result)
        if outcome.status is UpdateStatus.NOT_FOUND or outcome.message_id is None:
            return (UpdateResult.NOT_FOUND, 0), None
        key = MessageKey(correspondent_id, outcome.message_id)
        if outcome.entry is not None:
            self._ingestion.track(bot_id, key)
            self._ingestion.notify()
            # One INFO line per media message ("placeholder injected"); the rest at DEBUG:
            # two lines per placeholder were 12 % of queue_svc's samples in the media bench.
            log.debug(
                "placeholder resolved",
                extra={
                    "bot_id": bot_id,
                    "correspondent_id": correspondent_id,
                    "media_processing_id": media_processing_id,
                    "message_id": outcome.message_id,
                },
            )
        return (UpdateResult.UPDATED, outcome.message_id), key


def bounded_detail(detail: str | None) -> str | None:
    if not detail:
        return None
    if len(detail) <= CONDITION_DETAIL_MAX_CHARS:
        return detail
    return detail[: CONDITION_DETAIL_MAX_CHARS - 1] + "…"
