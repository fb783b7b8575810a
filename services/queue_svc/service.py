"""QueueService: the thin front of queue_svc's domain. No gRPC types here.

It wires the parts and holds each request's bot active through the gate:
- bot_gate.py: which bots are starting, active or stopping;
- lifecycle.py: StartBot / StopBot (windows, history and jobs loaded and parked);
- placeholders.py: InjectPlaceholder / UpdateByMediaId (the media job first);
- ingestion.py: ready messages persisted in group commits, then emitted once;
- subscriptions.py: Subscribe's live listeners, after a replay from the store here.

Every write is acknowledged only once it is durable: ready messages in `queues`
(through ingestion's group commit), placeholders through their media job, which is
created in the store before the placeholder is appended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Protocol

from services.common.errors import ChatbotError, UnavailableError
from services.common.media_jobs import DefinitionsDocument, MediaJobs
from services.common.store import (
    BotConfigStore,
    DefinitionsStore,
    IdentityPair,
    IdentityStore,
    MediaJobStore,
    MessageStore,
)
from services.queue_svc.bot_gate import BotGate
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.identities import Identities, IdentityMetrics, Learned
from services.queue_svc.identity import pairs_in, readdress
from services.queue_svc.ingestion import DurableBatch, Ingestion, IngestionMetrics, await_durable
from services.queue_svc.lifecycle import BotLifecycle
from services.queue_svc.placeholders import CONDITION_DETAIL_MAX_CHARS, Placeholders
from services.queue_svc.processor_routing import ProcessorRouting
from services.queue_svc.recovery import queued_message
from services.queue_svc.service_types import (
    AddItem,
    AddResult,
    AddStatus,
    BotNotActiveError,
    MediaUpdate,
    PlaceholderRequest,
    ServiceSettings,
    StartResult,
    StopResult,
    UpdateResult,
    Window,
    WrongShardError,
    store_call,
)
from services.queue_svc.subscriptions import Delivery, Subscription, Subscriptions

# The request and result types are imported from here by the servicer and the tests.
__all__ = [
    "CONDITION_DETAIL_MAX_CHARS",
    "AddItem",
    "AddResult",
    "AddStatus",
    "BotNotActiveError",
    "MediaUpdate",
    "PlaceholderRequest",
    "QueueService",
    "ServiceMetrics",
    "ServiceSettings",
    "StartResult",
    "StopResult",
    "UpdateResult",
    "Window",
    "WrongShardError",
]

log = logging.getLogger("queue_svc.service")

# Messages read from the store per replay query: bounds a resuming subscriber's memory.
REPLAY_PAGE = 500


class QueueStore(
    BotConfigStore, DefinitionsStore, MessageStore, MediaJobStore, IdentityStore, Protocol
):
    """Everything but leases: queue_svc takes none."""


class ServiceMetrics(IngestionMetrics, IdentityMetrics, Protocol):
    def subscriber_dropped(self) -> None: ...


class QueueService:
    """The queue_svc domain service. Start with `start()`, stop with `shutdown()`."""

    def __init__(
        self,
        store: QueueStore,
        settings: ServiceSettings | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._store = store
        self._settings = settings or ServiceSettings()
        self._gate = BotGate(self._settings.write_timeout_seconds)
        self._metrics = metrics
        self._subscriptions = Subscriptions(self._settings.subscriber_buffer, self._dropped)
        self.subscriber_drops = 0
        self._ingestion = Ingestion(
            store,
            self._subscriptions,
            self._gate.active_queues,
            batch_size=self._settings.batch_size,
            linger_seconds=self._settings.linger_seconds,
            retry_seconds=self._settings.retry_seconds,
            metrics=metrics,
        )
        jobs = MediaJobs(store)
        routing = ProcessorRouting(
            DefinitionsDocument(store), self._settings.definitions_refresh_seconds
        )
        self._placeholders = Placeholders(
            store, jobs, routing, self._ingestion, self._settings.write_timeout_seconds
        )
        self._identities = Identities(store, self._ingestion, metrics)
        self._lifecycle = BotLifecycle(
            store,
            jobs,
            self._settings,
            self._gate,
            self._ingestion,
            self._subscriptions,
            self._identities,
        )
        self._closed = False

    def _dropped(self) -> None:
        self.subscriber_drops += 1
        log.warning("subscriber disconnected: its buffer overflowed")
        if self._metrics is not None:
            self._metrics.subscriber_dropped()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> list[str]:
        """Starts ingestion and re-activates this shard's bots that were active before a
        restart (the registry lists every shard's bots; the others resume their own)."""
        self._ingestion.start()
        resumed: list[str] = []
        if not self._settings.resume_bots:
            return resumed
        registered = await store_call(self._store.active_bots(), "active_bots")
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
        self._gate.stop_all()
        try:
            return await self._ingestion.stop()
        finally:
            self._subscriptions.close_all()

    def is_active(self, bot_id: str) -> bool:
        return self._gate.is_active(bot_id)

    async def start_bot(self, bot_id: str) -> StartResult:
        return await self._lifecycle.start_bot(bot_id, self._closed)

    async def stop_bot(self, bot_id: str) -> StopResult:
        return await self._lifecycle.stop_bot(bot_id)

    async def _enter_bots(
        self, stack: AsyncExitStack, bot_ids: Iterable[str]
    ) -> dict[str, BotQueues | None]:
        """Each distinct bot's gate entered once on `stack` (held until it closes);
        None for a bot that is not active."""
        bots: dict[str, BotQueues | None] = {}
        for bot_id in bot_ids:
            if bot_id not in bots:
                try:
                    bots[bot_id] = await stack.enter_async_context(self._gate.operation(bot_id))
                except BotNotActiveError:
                    bots[bot_id] = None
        return bots

    # -- AddMessage / AddMessages --------------------------------------------------

    async def add_messages(self, items: Sequence[AddItem]) -> list[AddResult]:
        """Appends ready messages in order; returns once every ADDED one is durable."""
        results: list[AddResult | None] = [None] * len(items)
        async with AsyncExitStack() as stack:
            bots = await self._enter_bots(stack, (item.bot_id for item in items))
            # One store query per bot for provider ids the memory does not know: a frame
            # resent after a restart is still recognised.
            misses: dict[str, set[str]] = {}
            for item in items:
                bot = bots[item.bot_id]
                pid = item.message.provider_message_id
                if bot is not None and pid and not bot.lookup_provider_id(pid)[0]:
                    misses.setdefault(item.bot_id, set()).add(pid)
            # Asked together: the reads start in one event-loop turn, so the SQLite runner
            # takes them in one hand-over and one transaction, not one round trip per bot.
            founds = await asyncio.gather(
                *(
                    store_call(
                        self._store.persisted_provider_ids(bot_id, pids), "persisted_provider_ids"
                    )
                    for bot_id, pids in misses.items()
                )
            )
            for bot_id, found in zip(misses, founds, strict=True):
                bot = bots[bot_id]
                assert bot is not None
                bot.remember_persisted(found)
            waits: list[asyncio.Future[None] | None] = []
            # Pairs the batch reveals are learned (and merges done, events queued) before
            # any of its messages is queued, so they all land in the person's one queue.
            revealed: dict[str, list[IdentityPair]] = {}
            for item in items:
                if bots[item.bot_id] is not None:
                    pairs = pairs_in(item.correspondent_id, item.message)
                    if pairs:
                        revealed.setdefault(item.bot_id, []).extend(pairs)
            learned: dict[str, Learned] = {}
            for bot_id, pairs in revealed.items():
                bot = bots[bot_id]
                assert bot is not None
                learned[bot_id] = await self._identities.learn(bot, pairs)
                waits.extend(learned[bot_id].waits)
            batch = DurableBatch()
            waiting = False
            for i, item in enumerate(items):
                bot = bots[item.bot_id]
                if bot is None:
                    results[i] = AddResult(AddStatus.BOT_NOT_ACTIVE)
                    continue
                correspondent_id, message = readdress(
                    bot.identities, item.correspondent_id, item.message
                )
                outcome = bot.add(correspondent_id, message)
                if outcome.entry is not None:
                    key = MessageKey(correspondent_id, outcome.entry.id)
                    self._ingestion.track(item.bot_id, key)
                    added = self._ingestion.durable_in(batch, item.bot_id, key)
                    assert added
                    waiting = True
                    results[i] = AddResult(AddStatus.ADDED, outcome.entry.id)
                else:
                    # A duplicate of a message that is not durable yet is answered only
                    # once it is, so no acknowledgement ever covers a losable write.
                    if outcome.duplicate_of is not None:
                        waiting |= self._ingestion.durable_in(
                            batch, item.bot_id, outcome.duplicate_of
                        )
                    results[i] = AddResult(AddStatus.DUPLICATE)
            if waiting:
                waits.append(batch.future)
            self._ingestion.notify()
            await await_durable(waits, self._settings.write_timeout_seconds)
            for bot_id, applied in learned.items():
                await self._identities.settle(bot_id, applied)
        return [r for r in results if r is not None]

    async def add_message(self, item: AddItem) -> AddResult:
        (result,) = await self.add_messages([item])
        if result.status is AddStatus.BOT_NOT_ACTIVE:
            raise BotNotActiveError(f"bot {item.bot_id!r} is not active; call StartBot first")
        return result

    # -- InjectPlaceholder / UpdateByMediaId ----------------------------------------

    async def inject_placeholder(self, request: PlaceholderRequest) -> tuple[int, bool]:
        """New media message: job first (durable), then the placeholder. (id, duplicate)."""
        async with self._gate.operation(request.bot_id) as bot:
            learned = await self._identities.learn(
                bot, pairs_in(request.correspondent_id, request.message)
            )
            correspondent_id, message = readdress(
                bot.identities, request.correspondent_id, request.message
            )
            if correspondent_id != request.correspondent_id or message is not request.message:
                request = dataclasses.replace(
                    request, correspondent_id=correspondent_id, message=message
                )
            result = await self._placeholders.inject(bot, request)
            await await_durable(learned.waits, self._settings.write_timeout_seconds)
            await self._identities.settle(bot.bot_id, learned)
            return result

    async def update_by_media_id(
        self,
        bot_id: str,
        correspondent_id: str,
        media_processing_id: str,
        content: str,
        media_result: str | None = None,
    ) -> tuple[UpdateResult, int]:
        """Addressed by the id the media was sent under; a phone JID whose person is
        now kept under a LID finds its placeholder there. `media_result` is the typed
        values processing learned (MediaResult JSON)."""
        try:
            async with self._gate.operation(bot_id) as bot:
                return await self._placeholders.resolve(
                    bot,
                    bot.identities.canonical(correspondent_id),
                    media_processing_id,
                    content,
                    media_result,
                )
        except BotNotActiveError:
            return UpdateResult.BOT_NOT_ACTIVE, 0

    async def update_by_media_ids(
        self, items: Sequence[MediaUpdate]
    ) -> list[tuple[UpdateResult, int] | Exception]:
        """UpdateByMediaId for each item, in order, as the unary calls would answer them
        (an item's own error in its place), with one durability wait for the whole batch
        rather than one per item; an item is answered UPDATED only once it is durable."""
        results: list[tuple[UpdateResult, int] | Exception] = []
        waiting: list[int] = []
        batch = DurableBatch()
        async with AsyncExitStack() as stack:
            bots = await self._enter_bots(stack, (item.bot_id for item in items))
            for item in items:
                bot = bots[item.bot_id]
                if bot is None:
                    results.append((UpdateResult.BOT_NOT_ACTIVE, 0))
                    continue
                try:
                    result, key = self._placeholders.resolve_now(
                        bot,
                        bot.identities.canonical(item.correspondent_id),
                        item.media_processing_id,
                        item.content,
                        item.media_result,
                    )
                except Exception as exc:  # this item's own error, as its unary call's
                    results.append(exc)
                    continue
                if key is not None and self._ingestion.durable_in(batch, item.bot_id, key):
                    waiting.append(len(results))
                results.append(result)
            if waiting:
                try:
                    await await_durable([batch.future], self._settings.write_timeout_seconds)
                except Exception as exc:
                    for i in waiting:
                        results[i] = exc
        return results

    # -- LearnIdentities -----------------------------------------------------------

    async def learn_identities(self, bot_id: str, pairs: Sequence[IdentityPair]) -> tuple[int, int]:
        """Pairs learned outside any message: (newly recorded, queues merged). For a bot
        that is not active they are only recorded; its next StartBot applies them."""
        self._lifecycle.check_shard(bot_id)
        try:
            async with self._gate.operation(bot_id) as bot:
                learned = await self._identities.learn(bot, pairs)
                await await_durable(learned.waits, self._settings.write_timeout_seconds)
                await self._identities.settle(bot_id, learned)
                return len(learned.pairs), learned.merged
        except BotNotActiveError:
            recorded = await store_call(
                self._store.learn_identities(bot_id, pairs), "learn_identities"
            )
        if recorded and self._gate.get(bot_id) is not None:
            # The bot started while the pairs were written: its StartBot may have read
            # the map before them. Applying them again is harmless (a merge finds
            # nothing left, the event is deduplicated by its provider id).
            try:
                async with self._gate.operation(bot_id) as bot:
                    applied = await self._identities.apply(
                        bot, recorded, announce={p.phone_jid for p in recorded}
                    )
                    await await_durable(applied.waits, self._settings.write_timeout_seconds)
                    await self._identities.settle(bot_id, applied)
                    return len(recorded), applied.merged
            except BotNotActiveError:
                pass  # stopped again: the next StartBot applies them
        return len(recorded), 0

    # -- PopReady, GetWindow, Subscribe --------------------------------------------

    async def pop_ready(self, bot_id: str, limit: int) -> list[Delivery]:
        """Takes the oldest ready messages not yet persisted and persists them now
        (the same group commit as ingestion), so whoever pops them holds durable rows."""
        async with self._gate.operation(bot_id) as bot:
            return await self._ingestion.flush([bot], limit or self._settings.batch_size)

    async def window(self, bot_id: str, correspondent_id: str) -> Window:
        async with self._gate.operation(bot_id) as bot:
            queue = bot.queue(bot.identities.canonical(correspondent_id))
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
        max_batch: int = 1,
    ) -> AsyncGenerator[list[Delivery], None]:
        """Subscribe with resume points: for each bot with a cursor (given, or stored for
        `consumer_name`), everything persisted after it from the store, then live; in
        batches of up to `max_batch` (live: whatever is buffered when the caller asks).

        The live listener is registered first and buffers while the replay runs; the
        replay stops at the bot's high-water mark taken after registering (everything up
        to it is committed, everything after it reaches the buffer), and the buffer is
        then drained skipping what the replay already sent: no gap, no repeat.
        """
        subscription = self.subscribe(bot_id)
        try:
            resume = dict(cursors or {})
            if consumer_name:
                stored = await store_call(
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
                    high = await store_call(self._store.max_sequence(bot), "max_sequence")
                position = after
                while position < high:
                    page = await store_call(
                        self._store.messages_after(bot, position, REPLAY_PAGE), "messages_after"
                    )
                    page = [m for m in page if m.sequence is not None and m.sequence <= high]
                    if not page:
                        break
                    replayed = [
                        Delivery(
                            bot,
                            m.provider_name,
                            m.correspondent_id,
                            queued_message(m),
                            m.sequence or 0,
                        )
                        for m in page
                    ]
                    for start in range(0, len(replayed), max_batch):
                        yield replayed[start : start + max_batch]
                    position = page[-1].sequence or position
                sent[bot] = max(after, high)
            while True:
                batch = await subscription.next_batch(max_batch)
                if not batch:
                    return
                if sent:
                    batch = [d for d in batch if d.sequence > sent.get(d.bot_id, 0)]
                if batch:
                    yield batch
        finally:
            self._subscriptions.unsubscribe(subscription)

    async def commit_cursor(self, consumer_name: str, bot_id: str, sequence: int) -> bool:
        """Stores a named consumer's cursor (never moves back)."""
        return await store_call(
            self._store.advance_cursor(consumer_name, bot_id, sequence), "advance_cursor"
        )

    def close_subscriptions(self) -> None:
        """Ends every Subscribe stream (shutdown), so the server need not wait for them."""
        self._subscriptions.close_all()

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.unsubscribe(subscription)

    # -- observation ---------------------------------------------------------------

    def bot_snapshots(self) -> Iterable[tuple[str, BotQueues]]:
        return [(b.bot_id, b.queues) for b in self._gate.bots() if b.queues is not None]

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def now(self) -> float:
        return time.monotonic()
