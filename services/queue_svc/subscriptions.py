"""Subscribers of ready messages: one bounded buffer each, never blocking the writers.

Policy when a buffer overflows: the subscriber is disconnected with a clear error
instead of silently losing a message (delivery is exactly once, so a gap would be
invisible). It resubscribes and catches up from the store (`queues`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.errors import ChatbotError
from services.queue_svc.messages import QueuedMessage


class SubscriberOverflowError(ChatbotError):
    """The subscriber fell further behind than its buffer allows. Maps to RESOURCE_EXHAUSTED."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A ready, persisted message as subscribers receive it."""

    bot_id: str
    provider_name: str
    correspondent_id: str
    message: QueuedMessage
    # The bot's delivery sequence, assigned by the store with the insert.
    sequence: int = 0


class Subscription:
    """One subscriber's buffer. Read it with `next()`; None means the service closed it."""

    def __init__(self, bot_id: str | None, capacity: int) -> None:
        self.bot_id = bot_id
        self._capacity = capacity
        self._buffer: deque[Delivery] = deque()
        self._signal = asyncio.Event()
        self._overflowed = False
        self._closed = False

    def wants(self, delivery: Delivery) -> bool:
        return self.bot_id is None or self.bot_id == delivery.bot_id

    def offer(self, delivery: Delivery) -> bool:
        """Buffers without waiting; False (and the subscription is finished) on overflow."""
        if self._overflowed or self._closed:
            return False
        if len(self._buffer) >= self._capacity:
            self._overflowed = True
            self._buffer.clear()
            self._signal.set()
            return False
        self._buffer.append(delivery)
        self._signal.set()
        return True

    def close(self) -> None:
        self._closed = True
        self._signal.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def next(self) -> Delivery | None:
        batch = await self.next_batch(1)
        return batch[0] if batch else None

    async def next_batch(self, limit: int) -> list[Delivery]:
        """What is buffered, up to `limit` (at least one, waiting for it); [] means the
        service closed the subscription."""
        while True:
            if self._overflowed:
                raise SubscriberOverflowError(
                    f"subscriber fell more than {self._capacity} messages behind and was "
                    "disconnected so no message is silently skipped; read the missed messages "
                    "from the store and subscribe again (or raise QUEUE_SVC_SUBSCRIBER_BUFFER)"
                )
            if self._buffer:
                buffer = self._buffer
                return [buffer.popleft() for _ in range(min(limit, len(buffer)))]
            if self._closed:
                return []
            self._signal.clear()
            await self._signal.wait()


class Subscriptions:
    """Every live subscription; publishing is synchronous and O(subscribers)."""

    def __init__(self, capacity: int, on_drop: Callable[[], None] = lambda: None) -> None:
        self._capacity = capacity
        self._subscriptions: set[Subscription] = set()
        self._on_drop = on_drop
        # Per bot, the highest sequence whose batch is fully in the store and published:
        # a resuming subscriber replays up to it from the store and takes the rest live.
        self._high: dict[str, int] = {}

    def high(self, bot_id: str) -> int | None:
        """The bot's last published sequence (or its store maximum seeded at StartBot);
        None when this process has not seen the bot."""
        return self._high.get(bot_id)

    def seed(self, bot_id: str, sequence: int) -> None:
        self._high[bot_id] = max(sequence, self._high.get(bot_id, 0))

    def subscribe(self, bot_id: str | None) -> Subscription:
        subscription = Subscription(bot_id, self._capacity)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def __len__(self) -> int:
        return len(self._subscriptions)

    def publish(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.sequence > self._high.get(delivery.bot_id, 0):
                self._high[delivery.bot_id] = delivery.sequence
        for subscription in list(self._subscriptions):
            for delivery in deliveries:
                if subscription.wants(delivery) and not subscription.offer(delivery):
                    self._subscriptions.discard(subscription)
                    self._on_drop()
                    break

    def close_all(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
