"""QueueService: the active bots, their queues, ingestion, recovery. No gRPC types here.

Every write is acknowledged only once it is durable: ready messages in `queues`
(through ingestion's group commit), placeholders through their media job, which is
created in the store before the placeholder is appended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol, TypeVar

from services.common.errors import (
    ChatbotError,
    InvalidInputError,
    PreconditionError,
    UnavailableError,
)
from services.common.routing import MediaCondition, route_key
from services.common.sharding import ShardIdentity
from services.common.store import (
    BotConfig,
    JobCollection,
    JobStatus,
    NewMediaJob,
    Store,
)
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.correspondent_queue import UpdateStatus
from services.queue_svc.ingestion import Ingestion, IngestionMetrics
from services.queue_svc.messages import MediaInfo, NewMessage, QueuedMessage, QueueLimits
from services.queue_svc.processor_routing import ProcessorRouting
from services.queue_svc.recovery import (
    RecoveryResult,
    queued_message,
    restore_history,
    restore_job,
    restore_jobs,
)
from services.queue_svc.subscriptions import Delivery, Subscription, Subscriptions

log = logging.getLogger("queue_svc.service")
T = TypeVar("T")

# Messages read from the store per replay query: bounds a resuming subscriber's memory.
REPLAY_PAGE = 500

# Node's reason for unstaged media is a diagnostic kept with the job; an oversized one is
# cut rather than refused, so the media message itself is never lost over it.
CONDITION_DETAIL_MAX_CHARS = 1_000


class BotNotActiveError(PreconditionError):
    """The bot is not started (or is stopping). Maps to FAILED_PRECONDITION."""


class WrongShardError(PreconditionError):
    """The bot belongs to another queue_svc shard. Maps to FAILED_PRECONDITION."""


class AddStatus(Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    BOT_NOT_ACTIVE = "bot_not_active"


class UpdateResult(Enum):
    UPDATED = "updated"
    NOT_FOUND = "not_found"
    BOT_NOT_ACTIVE = "bot_not_active"


@dataclass(frozen=True, slots=True)
class AddItem:
    bot_id: str
    correspondent_id: str
    message: NewMessage


@dataclass(frozen=True, slots=True)
class AddResult:
    status: AddStatus
    id: int = 0


@dataclass(frozen=True, slots=True)
class PlaceholderRequest:
    bot_id: str
    correspondent_id: str
    message: NewMessage
    media: MediaInfo
    media_processing_id: str
    condition: MediaCondition
    file_size: int = 0
    condition_detail: str | None = None


@dataclass(frozen=True, slots=True)
class StartResult:
    started: bool
    jobs_reactivated: int = 0
    placeholders_restored: int = 0
    results_applied: int = 0
    # Persisted messages put back into the windows (within the bot's limits).
    history_restored: int = 0


@dataclass(frozen=True, slots=True)
class StopResult:
    stopped: bool
    messages_persisted: int = 0
    jobs_parked: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    messages: list[QueuedMessage]
    total_characters: int
    next_id: int


class ServiceMetrics(IngestionMetrics, Protocol):
    def subscriber_dropped(self) -> None: ...


class _State(Enum):
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"


class _Bot:
    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        self.state = _State.STARTING
        self.queues: BotQueues | None = None
        self.started = asyncio.Event()
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    batch_size: int = 1000
    linger_seconds: float = 0.0
    retry_seconds: float = 0.5
    write_timeout_seconds: float = 10.0
    subscriber_buffer: int = 10_000
    dedup_capacity: int = 100_000
    definitions_refresh_seconds: float = 10.0
    resume_bots: bool = True
    # The bots this replica serves (services.common.sharding); 0/1 serves every bot.
    shard: ShardIdentity = field(default_factory=ShardIdentity)


async def _store_call(call: Awaitable[T], what: str) -> T:
    """Store failures become UnavailableError (retry); our own errors pass through."""
    try:
        return await call
    except ChatbotError:
        raise
    except Exception as exc:
        raise UnavailableError(f"store unavailable ({what}): {exc}") from exc


class QueueService:
    """The queue_svc domain service. Start with `start()`, stop with `shutdown()`."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._store = store
        self._settings = settings or ServiceSettings()
        self._bots: dict[str, _Bot] = {}
        self._metrics = metrics
        self._subscriptions = Subscriptions(self._settings.subscriber_buffer, self._dropped)
        self.subscriber_drops = 0
        self._ingestion = Ingestion(
            store,
            self._subscriptions,
            self._active_queues,
            batch_size=self._settings.batch_size,
            linger_seconds=self._settings.linger_seconds,
            retry_seconds=self._settings.retry_seconds,
            metrics=metrics,
        )
        self._routing = ProcessorRouting(store, self._settings.definitions_refresh_seconds)
        self._closed = False

    def _dropped(self) -> None:
        self.subscriber_drops += 1
        log.warning("subscriber disconnected: its buffer overflowed")
        if self._metrics is not None:
            self._metrics.subscriber_dropped()

    def _active_queues(self) -> list[BotQueues]:
        return [b.queues for b in self._bots.values() if b.queues is not None]

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> list[str]:
        """Starts ingestion and re-activates this shard's bots that were active before a
        restart (the registry lists every shard's bots; the others resume their own)."""
        self._ingestion.start()
        resumed: list[str] = []
        if not self._settings.resume_bots:
            return resumed
        registered = await _store_call(self._store.active_bots(), "active_bots")
        for bot_id in (b for b in registered if self._settings.shard.owns(b)):
            try:
                result = await self.start_bot(bot_id)
            except ChatbotError as exc:
                log.error("could not resume bot: %s", exc, extra={"bot_id": bot_id})
                continue
            if result.started:
                resumed.append(bot_id)
                log.info(
                    "resumed bot after restart",
                    extra={"bot_id": bot_id, "placeholders": result.placeholders_restored},
                )
        return resumed

    async def shutdown(self) -> int:
        """Final drain of every backlog; bots stay marked active for the next start."""
        if self._closed:
            return 0
        self._closed = True
        for bot in self._bots.values():
            if bot.state is _State.ACTIVE:
                bot.state = _State.STOPPING
        try:
            return await self._ingestion.stop()
        finally:
            self._subscriptions.close_all()

    # -- bot gate ------------------------------------------------------------------

    async def _wait_started(self, bot_id: str) -> _Bot | None:
        bot = self._bots.get(bot_id)
        if bot is not None and bot.state is _State.STARTING:
            try:
                await asyncio.wait_for(bot.started.wait(), self._settings.write_timeout_seconds)
            except TimeoutError:
                return None
            bot = self._bots.get(bot_id)
        if bot is None or bot.state is not _State.ACTIVE or bot.queues is None:
            return None
        return bot

    @asynccontextmanager
    async def _operation(self, bot_id: str) -> AsyncIterator[BotQueues]:
        """Holds the bot active for one request; StopBot waits for these to finish."""
        bot = await self._wait_started(bot_id)
        if bot is None or bot.queues is None:
            raise BotNotActiveError(f"bot {bot_id!r} is not active; call StartBot first")
        bot.inflight += 1
        bot.idle.clear()
        try:
            yield bot.queues
        finally:
            bot.inflight -= 1
            if bot.inflight == 0:
                bot.idle.set()

    def is_active(self, bot_id: str) -> bool:
        bot = self._bots.get(bot_id)
        return bot is not None and bot.state is _State.ACTIVE

    async def _await_durable(self, futures: Sequence[asyncio.Future[None]]) -> None:
        if not futures:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self._settings.write_timeout_seconds)
        except TimeoutError:
            raise UnavailableError(
                f"the store did not confirm the write within "
                f"{self._settings.write_timeout_seconds}s; nothing acknowledged, retry"
            ) from None

    # -- AddMessage / AddMessages --------------------------------------------------

    async def add_messages(self, items: Sequence[AddItem]) -> list[AddResult]:
        """Appends ready messages in order; returns once every ADDED one is durable."""
        results: list[AddResult | None] = [None] * len(items)
        async with AsyncExitStack() as stack:
            bots: dict[str, BotQueues | None] = {}
            for item in items:
                if item.bot_id not in bots:
                    try:
                        bots[item.bot_id] = await stack.enter_async_context(
                            self._operation(item.bot_id)
                        )
                    except BotNotActiveError:
                        bots[item.bot_id] = None
            # One store query per bot for provider ids the memory does not know: a frame
            # resent after a restart is still recognised.
            misses: dict[str, set[str]] = {}
            for item in items:
                bot = bots[item.bot_id]
                pid = item.message.provider_message_id
                if bot is not None and pid and not bot.lookup_provider_id(pid)[0]:
                    misses.setdefault(item.bot_id, set()).add(pid)
            for bot_id, pids in misses.items():
                found = await _store_call(
                    self._store.persisted_provider_ids(bot_id, pids), "persisted_provider_ids"
                )
                bot = bots[bot_id]
                assert bot is not None
                bot.remember_persisted(found)
            waits: list[asyncio.Future[None]] = []
            for i, item in enumerate(items):
                bot = bots[item.bot_id]
                if bot is None:
                    results[i] = AddResult(AddStatus.BOT_NOT_ACTIVE)
                    continue
                outcome = bot.add(item.correspondent_id, item.message)
                if outcome.entry is not None:
                    key = MessageKey(item.correspondent_id, outcome.entry.id)
                    self._ingestion.track(item.bot_id, key)
                    future = self._ingestion.durable(item.bot_id, key)
                    assert future is not None
                    waits.append(future)
                    results[i] = AddResult(AddStatus.ADDED, outcome.entry.id)
                else:
                    # A duplicate of a message that is not durable yet is answered only
                    # once it is, so no acknowledgement ever covers a losable write.
                    if outcome.duplicate_of is not None:
                        future = self._ingestion.durable(item.bot_id, outcome.duplicate_of)
                        if future is not None:
                            waits.append(future)
                    results[i] = AddResult(AddStatus.DUPLICATE)
            self._ingestion.notify()
            await self._await_durable(waits)
        return [r for r in results if r is not None]

    async def add_message(self, item: AddItem) -> AddResult:
        (result,) = await self.add_messages([item])
        if result.status is AddStatus.BOT_NOT_ACTIVE:
            raise BotNotActiveError(f"bot {item.bot_id!r} is not active; call StartBot first")
        return result

    # -- InjectPlaceholder ---------------------------------------------------------

    async def inject_placeholder(self, request: PlaceholderRequest) -> tuple[int, bool]:
        """New media message: job first (durable), then the placeholder. (id, duplicate)."""
        extra = {
            "bot_id": request.bot_id,
            "correspondent_id": request.correspondent_id,
            "media_processing_id": request.media_processing_id,
        }
        async with self._operation(request.bot_id) as bot:
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
                    found = await _store_call(
                        self._store.persisted_provider_ids(request.bot_id, [pid]),
                        "persisted_provider_ids",
                    )
                    bot.remember_persisted(found)
                    seen = bool(found)
                if seen:
                    return (key.id if key is not None else 0), True
            definitions = await self._routing.definitions()
            pool = definitions.resolve(
                request.condition, request.media.media_kind, request.media.mime_type
            )
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
                route=route_key(
                    request.condition, request.media.media_kind, request.media.mime_type
                ),
                pool=pool,
                has_staged_file=request.condition is MediaCondition.STAGED,
                group_id=m.group_id,
                group_name=m.group_name,
                condition_detail=_bounded_detail(request.condition_detail),
                details=m.details,
            )
            created = await _store_call(self._store.create_job(job), "create_job")
            if not created:
                return await self._retried_placeholder(bot, request)
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

    async def _retried_placeholder(
        self, bot: BotQueues, request: PlaceholderRequest
    ) -> tuple[int, bool]:
        """The job already exists (a retry after the first answer was lost, or a crash
        between creating the job and answering): make the queue match the job."""
        found = await _store_call(self._store.get_job(request.media_processing_id), "get_job")
        if found is None:
            raise UnavailableError("the media job vanished while being recorded; retry")
        collection, job = found
        if job.bot_id != request.bot_id or job.correspondent_id != request.correspondent_id:
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
                await self._await_durable([w for w in waits if w is not None])
        return job.message_id, True

    # -- UpdateByMediaId -----------------------------------------------------------

    async def update_by_media_id(
        self, bot_id: str, correspondent_id: str, media_processing_id: str, content: str
    ) -> tuple[UpdateResult, int]:
        try:
            async with self._operation(bot_id) as bot:
                return await self._resolve(bot, correspondent_id, media_processing_id, content)
        except BotNotActiveError:
            return UpdateResult.BOT_NOT_ACTIVE, 0

    async def _resolve(
        self, bot: BotQueues, correspondent_id: str, media_processing_id: str, content: str
    ) -> tuple[UpdateResult, int]:
        bot_id = bot.bot_id
        outcome = bot.resolve(correspondent_id, media_processing_id, content)
        if outcome.status is UpdateStatus.NOT_FOUND or outcome.message_id is None:
            return UpdateResult.NOT_FOUND, 0
        key = MessageKey(correspondent_id, outcome.message_id)
        if outcome.entry is not None:
            self._ingestion.track(bot_id, key)
            self._ingestion.notify()
            log.info(
                "placeholder resolved",
                extra={
                    "bot_id": bot_id,
                    "correspondent_id": correspondent_id,
                    "media_processing_id": media_processing_id,
                    "message_id": outcome.message_id,
                },
            )
        future = self._ingestion.durable(bot_id, key)
        await self._await_durable([future] if future is not None else [])
        return UpdateResult.UPDATED, outcome.message_id

    # -- PopReady, GetWindow, Subscribe --------------------------------------------

    async def pop_ready(self, bot_id: str, limit: int) -> list[Delivery]:
        """Takes the oldest ready messages not yet persisted and persists them now
        (the same group commit as ingestion), so whoever pops them holds durable rows."""
        async with self._operation(bot_id) as bot:
            return await self._ingestion.flush([bot], limit or self._settings.batch_size)

    async def window(self, bot_id: str, correspondent_id: str) -> Window:
        async with self._operation(bot_id) as bot:
            queue = bot.queue(correspondent_id)
            return Window(queue.window(), queue.total_characters, queue.next_id)

    def subscribe(self, bot_id: str | None) -> Subscription:
        """Ready messages of this shard's bots only: with several shards the bot logic
        subscribes to each one and merges the streams."""
        if self._closed:
            raise UnavailableError("queue_svc is shutting down")
        return self._subscriptions.subscribe(bot_id)

    async def stream(
        self,
        bot_id: str | None,
        cursors: Mapping[str, int] | None = None,
        consumer_name: str | None = None,
    ) -> AsyncGenerator[Delivery, None]:
        """Subscribe with resume points: for each bot with a cursor (given, or stored for
        `consumer_name`), everything persisted after it from the store, then live.

        The live listener is registered first and buffers while the replay runs; the
        replay stops at the bot's high-water mark taken after registering (everything up
        to it is committed, everything after it reaches the buffer), and the buffer is
        then drained skipping what the replay already sent: no gap, no repeat.
        """
        subscription = self.subscribe(bot_id)
        try:
            resume = dict(cursors or {})
            if consumer_name:
                stored = await _store_call(
                    self._store.delivery_cursors(consumer_name), "delivery_cursors"
                )
                for bot, sequence in stored.items():
                    resume.setdefault(bot, sequence)
            resume = {
                bot: after
                for bot, after in resume.items()
                if self._settings.shard.owns(bot) and (bot_id is None or bot == bot_id)
            }
            sent: dict[str, int] = {}
            for bot, after in sorted(resume.items()):
                high = self._subscriptions.high(bot)
                if high is None:
                    high = await _store_call(self._store.max_sequence(bot), "max_sequence")
                position = after
                while position < high:
                    page = await _store_call(
                        self._store.messages_after(bot, position, REPLAY_PAGE), "messages_after"
                    )
                    page = [m for m in page if m.sequence is not None and m.sequence <= high]
                    if not page:
                        break
                    for stored_message in page:
                        assert stored_message.sequence is not None
                        yield Delivery(
                            bot,
                            stored_message.provider_name,
                            stored_message.correspondent_id,
                            queued_message(stored_message),
                            stored_message.sequence,
                        )
                    position = page[-1].sequence or position
                sent[bot] = max(after, high)
            while True:
                delivery = await subscription.next()
                if delivery is None:
                    return
                if delivery.sequence <= sent.get(delivery.bot_id, 0):
                    continue
                yield delivery
        finally:
            self._subscriptions.unsubscribe(subscription)

    async def commit_cursor(self, consumer_name: str, bot_id: str, sequence: int) -> bool:
        """Stores a named consumer's cursor (never moves back)."""
        return await _store_call(
            self._store.advance_cursor(consumer_name, bot_id, sequence), "advance_cursor"
        )

    def close_subscriptions(self) -> None:
        """Ends every Subscribe stream (shutdown), so the server need not wait for them."""
        self._subscriptions.close_all()

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.unsubscribe(subscription)

    # -- StartBot / StopBot --------------------------------------------------------

    def _check_shard(self, bot_id: str) -> None:
        shard = self._settings.shard
        if not shard.owns(bot_id):
            owner = shard.owner_of(bot_id)
            raise WrongShardError(
                f"bot {bot_id!r} belongs to queue_svc shard {owner} of {shard.count}, not to "
                f"this one ({shard}); call shard {owner}, entry {owner + 1} of "
                "QUEUE_SVC_ADDRESS (services.common.sharding.shard_of)"
            )

    async def start_bot(self, bot_id: str) -> StartResult:
        self._check_shard(bot_id)
        existing = self._bots.get(bot_id)
        if existing is not None:
            await self._wait_started(bot_id)
            return StartResult(started=False)
        if self._closed:
            raise UnavailableError("queue_svc is shutting down")
        bot = _Bot(bot_id)
        self._bots[bot_id] = bot
        extra = {"bot_id": bot_id}
        try:
            config = await _store_call(self._store.get_bot_config(bot_id), "get_bot_config")
            config = config or BotConfig(bot_id=bot_id)
            queues = BotQueues(
                bot_id,
                config.provider_name,
                QueueLimits(
                    max_messages=config.max_messages,
                    max_characters=config.max_characters,
                    max_age_seconds=config.max_age_seconds,
                    max_message_characters=config.max_message_characters,
                ),
                dedup_capacity=self._settings.dedup_capacity,
            )
            queues.seed_next_ids(
                await _store_call(
                    self._store.max_message_ids(bot_id, config.provider_name), "max_message_ids"
                )
            )
            # Everything this bot has in the store is below the high-water mark before
            # anything of this process is published (replays of resuming subscribers).
            self._subscriptions.seed(
                bot_id, await _store_call(self._store.max_sequence(bot_id), "max_sequence")
            )
            # The windows' context for the bot logic (GetWindow): one query for the bot.
            now = datetime.now(UTC)
            history = await _store_call(
                self._store.recent_messages(
                    bot_id,
                    config.provider_name,
                    config.max_messages,
                    now - timedelta(seconds=config.max_age_seconds),
                ),
                "recent_messages",
            )
            reactivated = await _store_call(
                self._store.move_bot_jobs(bot_id, JobCollection.HOLDING, JobCollection.ACTIVE),
                "move_bot_jobs",
            )
            jobs = await _store_call(
                self._store.list_jobs(bot_id, JobCollection.ACTIVE), "list_jobs"
            )
            completed_pids = {
                j.provider_message_id
                for j in jobs
                if j.status is JobStatus.COMPLETED and j.provider_message_id
            }
            persisted = (
                await _store_call(
                    self._store.persisted_provider_ids(bot_id, completed_pids),
                    "persisted_provider_ids",
                )
                if completed_pids
                else set()
            )
            recovery, already_done = restore_jobs(queues, jobs, persisted)
            for done in already_done:
                await self._finish_job(done.media_processing_id, done.error)
            # After the jobs: history goes ahead of the results applied just now.
            history_restored = restore_history(queues, history, now)
            bot.queues = queues
            for key in recovery.applied:
                self._ingestion.track(bot_id, key)
            waits = [self._ingestion.durable(bot_id, k) for k in recovery.applied]
            self._ingestion.notify()
            await self._await_durable([w for w in waits if w is not None])
            for media_id in recovery.completed_job_ids:
                await self._finish_job(media_id, recovery.failed_jobs.get(media_id))
            await self._mark_active(bot_id, True)
        except BaseException:
            # Nothing is acknowledged: the bot stays inactive and StartBot can be retried
            # (job moves and re-injection are idempotent).
            self._bots.pop(bot_id, None)
            bot.started.set()
            raise
        bot.state = _State.ACTIVE
        bot.started.set()
        log.info(
            "bot started",
            extra={
                **extra,
                "jobs_reactivated": reactivated,
                "placeholders_restored": recovery.placeholders_restored,
                "results_applied": recovery.results_applied,
                "history_restored": history_restored,
            },
        )
        return StartResult(
            True,
            reactivated,
            recovery.placeholders_restored,
            recovery.results_applied,
            history_restored,
        )

    async def _finish_job(self, media_processing_id: str, error: str | None) -> None:
        """A completed job whose message is durable: deleted, or, when its result is a
        failure (marker, stale timeout), moved to failed so operators still see it."""
        if not error:
            await _store_call(self._store.delete_job(media_processing_id), "delete_job")
        else:
            await _store_call(self._store.fail_job(media_processing_id, error), "fail_job")

    async def stop_bot(self, bot_id: str) -> StopResult:
        # Refused rather than answered `stopped=false`: the bot may well be running on
        # its own shard.
        self._check_shard(bot_id)
        bot = await self._wait_started(bot_id)
        if bot is None or bot.queues is None:
            return StopResult(stopped=False)
        bot.state = _State.STOPPING
        try:
            await asyncio.wait_for(bot.idle.wait(), self._settings.write_timeout_seconds)
            persisted = await self._ingestion.drain([bot.queues])
            parked = await _store_call(
                self._store.move_bot_jobs(bot_id, JobCollection.ACTIVE, JobCollection.HOLDING),
                "move_bot_jobs",
            )
            await self._mark_active(bot_id, False)
        except BaseException:
            bot.state = _State.ACTIVE
            raise
        del self._bots[bot_id]
        log.info(
            "bot stopped",
            extra={"bot_id": bot_id, "messages_persisted": persisted, "jobs_parked": parked},
        )
        return StopResult(True, persisted, parked)

    # -- the registry of active bots ----------------------------------------------

    async def _mark_active(self, bot_id: str, active: bool) -> None:
        # One atomic update per bot in the store: every shard writes this registry.
        await _store_call(self._store.set_bot_active(bot_id, active), "set_bot_active")

    # -- observation ---------------------------------------------------------------

    def bot_snapshots(self) -> Iterable[tuple[str, BotQueues]]:
        return [(b.bot_id, b.queues) for b in self._bots.values() if b.queues is not None]

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def now(self) -> float:
        return time.monotonic()


def _bounded_detail(detail: str | None) -> str | None:
    if not detail:
        return None
    if len(detail) <= CONDITION_DETAIL_MAX_CHARS:
        return detail
    return detail[: CONDITION_DETAIL_MAX_CHARS - 1] + "…"
