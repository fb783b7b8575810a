"""Ingestion: persists ready messages to `queues` in batches, then emits them once.

Writers append to a bot's backlog and wait until their message is durable (group
commit: everything ready at that moment goes into one `append_messages` call). After
the insert returns, the batch is emitted to subscribers, in backlog order, exactly
once, and the waiting writers are answered. A failed insert puts the batch back at the
front of the backlog, fails the current waiters with UNAVAILABLE, and is retried.

The store gives every inserted row its bot's next delivery sequence in the same write.
A process killed between the insert and the emission leaves messages in `queues` that
no live subscriber saw; a subscriber resuming from its cursor gets them replayed from
the store (see the README, "Delivery").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from services.common.errors import ChatbotError, UnavailableError
from services.common.store import MessageStore, StoredMessage, message_fields
from services.queue_svc.bot_queues import BotQueues, MessageKey, ReadyMessage
from services.queue_svc.subscriptions import Delivery, Subscriptions

log = logging.getLogger("queue_svc.ingestion")

PendingKey = tuple[str, MessageKey]


class IngestionMetrics(Protocol):
    def persisted(self, count: int) -> None: ...
    def emitted(self, count: int) -> None: ...


class _NoMetrics:
    def persisted(self, count: int) -> None:
        pass

    def emitted(self, count: int) -> None:
        pass


async def await_durable(
    futures: Sequence[asyncio.Future[None] | None], timeout_seconds: float
) -> None:
    """Waits until every write is durable (None: nothing left to wait for); a store that
    does not confirm in time means nothing is acknowledged and the caller retries."""
    pending = [f for f in futures if f is not None]
    if not pending:
        return
    # asyncio.wait, not wait_for(gather): the write futures belong to the persister and to
    # every caller waiting on the same message, so neither a timeout here nor this
    # caller's cancellation (its RPC deadline) may cancel them.
    done, not_done = await asyncio.wait(pending, timeout=timeout_seconds)
    if not_done:
        raise UnavailableError(
            f"the store did not confirm the write within "
            f"{timeout_seconds}s; nothing acknowledged, retry"
        )
    for future in done:
        future.result()  # a write that failed raises its error here


def stored_message(bot: BotQueues, ready: ReadyMessage) -> StoredMessage:
    return StoredMessage(
        *message_fields(ready.message),
        bot_id=bot.bot_id,
        provider_name=bot.provider_name,
        correspondent_id=ready.correspondent_id,
    )


class DurableBatch:
    """One waiter for every message of one call (AddMessages): `future` is done when
    each of them is durable, or fails with the first error. One future per call, not one
    per message, since a text batch carries hundreds."""

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._left = 0

    def add(self) -> None:
        self._left += 1

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, result: None) -> None:
        self._left -= 1
        if self._left == 0 and not self.future.done():
            self.future.set_result(result)

    def set_exception(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


Waiter = asyncio.Future[None] | DurableBatch


class Ingestion:
    """The background persister of every active bot's backlog."""

    def __init__(
        self,
        store: MessageStore,
        subscriptions: Subscriptions,
        bots: Callable[[], Iterable[BotQueues]],
        *,
        batch_size: int = 1000,
        linger_seconds: float = 0.0,
        retry_seconds: float = 0.5,
        metrics: IngestionMetrics | None = None,
    ) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._bots = bots
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._retry = retry_seconds
        self._metrics = metrics or _NoMetrics()
        self._pending: dict[PendingKey, list[Waiter]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- writers -------------------------------------------------------------------

    def track(self, bot_id: str, key: MessageKey) -> None:
        """Marks a message that entered the backlog as not yet durable."""
        self._pending.setdefault((bot_id, key), [])

    def durable(self, bot_id: str, key: MessageKey) -> asyncio.Future[None] | None:
        """A future done when that message is in `queues`; None when it already is."""
        waiters = self._pending.get((bot_id, key))
        if waiters is None:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        return future

    def durable_in(self, batch: DurableBatch, bot_id: str, key: MessageKey) -> bool:
        """Adds that message to `batch`; False (nothing added) when it is durable already."""
        waiters = self._pending.get((bot_id, key))
        if waiters is None:
            return False
        batch.add()
        waiters.append(batch)
        return True

    def rekey(self, bot_id: str, old: MessageKey, new: MessageKey) -> None:
        """A waiting message moved to another key (identity merge): its writers now wait
        for the new one."""
        waiters = self._pending.pop((bot_id, old), None)
        if waiters is not None:
            self._pending.setdefault((bot_id, new), []).extend(waiters)

    def notify(self) -> None:
        self._wake.set()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- the batch -----------------------------------------------------------------

    async def flush(self, bots: Iterable[BotQueues], limit: int) -> list[Delivery]:
        """Persists up to `limit` backlog messages of `bots`, then emits and answers them."""
        async with self._lock:
            taken: list[tuple[BotQueues, list[ReadyMessage]]] = []
            remaining = limit
            for bot in bots:
                if remaining <= 0:
                    break
                items = bot.pop_ready(remaining)
                if items:
                    taken.append((bot, items))
                    remaining -= len(items)
            if not taken:
                return []
            try:
                rows = [stored_message(bot, r) for bot, items in taken for r in items]
                appended = await self._store.append_messages(rows)
            except Exception as exc:
                for bot, items in taken:
                    bot.restore_ready(items)
                error = UnavailableError(f"store write failed, nothing acknowledged: {exc}")
                for bot, items in taken:
                    for r in items:
                        self._fail_waiters((bot.bot_id, r.key), error)
                if isinstance(exc, ChatbotError) and not isinstance(exc, UnavailableError):
                    raise
                raise error from exc
            inserted = appended.inserted
            if inserted != len(rows):
                # Idempotent insert: a row already there is a retried write (e.g. a
                # recovery after a crash); emitting it again is the lesser evil than
                # never emitting the rest of the batch, and ids stay unique in the store.
                log.warning(
                    "some rows of a batch were already persisted",
                    extra={"batch": len(rows), "inserted": inserted},
                )
            deliveries = [
                Delivery(bot.bot_id, bot.provider_name, r.correspondent_id, r.message, sequence)
                for (bot, r), sequence in zip(
                    ((bot, r) for bot, items in taken for r in items),
                    appended.sequences,
                    strict=True,
                )
            ]
            for bot, items in taken:
                bot.mark_durable(items)
            self._metrics.persisted(len(rows))
            self._subscriptions.publish(deliveries)
            self._metrics.emitted(len(deliveries))
            for bot, items in taken:
                for r in items:
                    for waiter in self._pending.pop((bot.bot_id, r.key), []):
                        if not waiter.done():
                            waiter.set_result(None)
            return deliveries

    def _fail_waiters(self, key: PendingKey, error: Exception) -> None:
        waiters = self._pending.get(key)
        if not waiters:
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        waiters.clear()

    async def drain(self, bots: Iterable[BotQueues]) -> int:
        """Persists everything in these backlogs (StopBot, shutdown). Raises if it cannot."""
        bots = list(bots)
        count = 0
        while any(bot.backlog_size for bot in bots):
            count += len(await self.flush(bots, self._batch_size))
        return count

    # -- the background task -------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="queue_svc.ingestion")

    async def stop(self) -> int:
        """Stops the task, then a final drain of every backlog (placeholders stay out)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return await self.drain(self._bots())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._linger:
                await asyncio.sleep(self._linger)
            self._wake.clear()
            try:
                while await self.flush(self._bots(), self._batch_size):
                    pass
            except ChatbotError as exc:
                log.error("ingestion batch failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(self._retry)
                self._wake.set()
