"""The webhook relay: every queue_svc shard's resumable Subscribe → one worker per bot
that POSTs each message to the bot's webhook, in sequence order.

Cursors (the last sequence handled per bot) live in the store under the relay's consumer
name; Subscribe resumes from them (server-side, `consumer_name`) after a relay restart,
and from the workers' positions after a stream outage. Several relays share the bots
(`ownership.py`): every relay receives every message, and only the bot's lease holder
runs its worker, which starts from the cursor stored when it took the bot and reads
from the store what came before. A message is handled when a 2xx
came (and the reply it carried, if any, was handed to the gateway) or when it was given
up and stored as a webhook dead letter: retries with backoff for at most
`max_attempts` / `max_retry_seconds`, fewer for answers that retrying will not change
(`webhook_post.is_permanent`). Only then does the cursor move, so delivery is at least
once and nothing is skipped without a dead letter; every attempt of one message carries
the same idempotency key `<bot_id>:<sequence>` and the same body.

A bot's worker holds at most `bot_buffer` messages; beyond that the stream's messages
of that bot are dropped from memory and the worker reads them from the store when it
gets there, so a slow receiver never holds up the stream, nor the other bots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import aiohttp
import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.store import (
    BotConfig,
    BotConfigStore,
    LeaseStore,
    MessageStore,
    WebhookDeadLetter,
    WebhookDeadLetterStore,
    bounded_reason,
)
from services.common.subscribe_batches import SUBSCRIBE_MAX_BATCH, delivered
from services.relay.config import RelayConfig
from services.relay.metrics import RelayMetrics
from services.relay.ownership import RelayOwnership
from services.relay.payload import Item, Reply, from_store, from_stream, reply_of
from services.relay.webhook_post import Attempt, WebhookPoster

log = logging.getLogger("relay")
T = TypeVar("T")

CATCH_UP_PAGE = 200
# A reply the gateway keeps refusing with 5xx (Node down, Node rejecting it) is given up
# after this many attempts, so one bad reply cannot stop the bot's deliveries for good.
REPLY_ATTEMPTS = 8


def backoff_delay(attempt: int, base: float, maximum: float, rng: random.Random) -> float:
    """Equal jitter: half of min(maximum, base * 2^(n-1)) fixed, up to the other half at
    random, so retrying workers never move in lockstep."""
    ceiling = min(maximum, base * 2.0 ** min(max(0, attempt - 1), 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RelayStore(BotConfigStore, MessageStore, WebhookDeadLetterStore, LeaseStore, Protocol):
    """Bots' webhook settings, their messages, the relay's delivery cursors, the
    webhook dead letters and the leases that share the bots among relays."""


class LeaseLostError(Exception):
    """The bot's lease was not renewed in time: its worker stops before the next POST."""


class BotWorker:
    """One bot's ordered delivery. `offer` never waits."""

    def __init__(self, relay: Relay, bot_id: str, cursor: int) -> None:
        self.relay = relay
        self.bot_id = bot_id
        # Last sequence delivered (and stored as the cursor).
        self.cursor = cursor
        # Last sequence received from a stream: Subscribe resumes after it.
        self.last_seen = cursor
        self.buffer: deque[Item] = deque()
        # Messages were dropped from memory: read the store from the cursor on.
        self.behind = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # A message is between its first attempt and being handled.
        self.delivering = False

    def offer(self, item: Item) -> None:
        if item.sequence <= self.last_seen:
            return  # a replay of something already received
        self.last_seen = item.sequence
        if self.behind:
            return
        if len(self.buffer) >= self.relay.config.bot_buffer:
            self.behind = True
        else:
            self.buffer.append(item)
        self.wake.set()
        self.relay.metrics.lag_messages.labels(self.bot_id).set(self.last_seen - self.cursor)

    async def run(self) -> None:
        with contextlib.suppress(LeaseLostError):
            await self._run()

    async def _run(self) -> None:
        while True:
            if self.buffer:
                item = self.buffer.popleft()
                if item.sequence > self.cursor:
                    await self.relay.deliver(self, item)
            elif self.behind:
                # Cleared first: whatever is published from now on reaches the buffer,
                # everything before it is in the store, which is read to its end.
                self.behind = False
                await self._catch_up()
            else:
                self.relay.metrics.lag_seconds.labels(self.bot_id).set(0)
                self.wake.clear()
                await self.wake.wait()

    async def _catch_up(self) -> None:
        while True:
            page = await self.relay.retrying(
                lambda: self.relay.store.messages_after(self.bot_id, self.cursor, CATCH_UP_PAGE),
                "messages_after",
            )
            if not page:
                return
            for stored in page:
                item = from_store(stored)
                if item.sequence > self.cursor:
                    await self.relay.deliver(self, item)


class Relay:
    def __init__(
        self,
        config: RelayConfig,
        store: RelayStore,
        http: aiohttp.ClientSession,
        poster: WebhookPoster,
        metrics: RelayMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # To the gateway (trusted, configured by the operator); webhooks go through the
        # SSRF-guarded poster.
        self.http = http
        self.poster = poster
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.workers: dict[str, BotWorker] = {}
        # The first sequence streamed per webhook bot: where a bot with neither a cursor
        # nor a recorded webhook start begins.
        self.first_seen: dict[str, int] = {}
        self.ownership = RelayOwnership(store, self, config.instance_id, config.lease_seconds)
        metrics.bots_owned.set_function(lambda: len(self.workers))
        metrics.relays_alive.set_function(lambda: self.ownership.members)
        self._configs: dict[str, tuple[float, BotConfig | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connected: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        # Bots with a cursor are candidates from the start (a backlog of theirs is
        # replayed by the streams anyway).
        for bot_id in await self.store.delivery_cursors(self.config.consumer_name):
            self.ownership.known.add(bot_id)
        self._tasks = [
            asyncio.create_task(self._subscribe(address), name=f"relay.subscribe:{address}")
            for address in self.config.queue_shards.addresses
        ]
        self._tasks.append(
            asyncio.create_task(self._watch_dead_letters(), name="relay.dead_letters")
        )
        self._tasks.append(asyncio.create_task(self.ownership.run(), name="relay.ownership"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Workers stopped and leases released: the other relays take over at once.
        await self.ownership.stop()
        for bot_id in list(self.workers):
            await self.lost(bot_id)

    # -- ownership (the Deliverer side of RelayOwnership) -------------------------------

    async def wanted(self, bot_id: str) -> bool:
        config = await self.bot_config(bot_id)
        return config is not None and config.webhook_url is not None

    def busy(self, bot_id: str) -> bool:
        worker = self.workers.get(bot_id)
        return worker is not None and worker.delivering

    async def gained(self, bot_id: str) -> None:
        """The cursor is read now, not at start: another relay may have moved it."""
        cursors = await self.retrying(
            lambda: self.store.delivery_cursors(self.config.consumer_name), "delivery_cursors"
        )
        cursor = cursors.get(bot_id)
        if cursor is None:
            # A webhook bot without a cursor: it starts where the webhook was configured
            # (the gateway records that sequence), else just before its first message
            # seen; stored now, so the next owner resumes from there.
            config = await self.bot_config(bot_id)
            since = config.webhook_since_sequence if config is not None else None
            if since is not None:
                start = since
            elif bot_id in self.first_seen:
                start = self.first_seen[bot_id] - 1
            else:
                start = await self.retrying(lambda: self.store.max_sequence(bot_id), "max_sequence")
            moved = await self.retrying(
                lambda: self.store.advance_cursor(self.config.consumer_name, bot_id, start),
                "advance_cursor",
            )
            cursor = start
            if not moved:  # written meanwhile by a previous owner: theirs stands
                cursors = await self.retrying(
                    lambda: self.store.delivery_cursors(self.config.consumer_name),
                    "delivery_cursors",
                )
                cursor = cursors.get(bot_id, start)
        worker = BotWorker(self, bot_id, cursor)
        # What was streamed before this relay took the bot was not kept: the worker
        # reads from the store from the cursor on first.
        worker.behind = True
        self.workers[bot_id] = worker
        worker.task = asyncio.create_task(worker.run(), name=f"relay.bot:{bot_id}")

    async def lost(self, bot_id: str) -> None:
        worker = self.workers.pop(bot_id, None)
        if worker is None or worker.task is None:
            return
        worker.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.task

    # -- the streams -----------------------------------------------------------------

    async def _subscribe(self, address: str) -> None:
        attempt = 0
        while True:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = q_grpc.QueueServiceStub(channel)
                    request = q.SubscribeRequest(
                        consumer_name=self.config.consumer_name,
                        max_batch=SUBSCRIBE_MAX_BATCH,
                        cursors=[
                            q.BotCursor(bot_id=bot_id, after_sequence=worker.last_seen)
                            for bot_id, worker in self.workers.items()
                        ],
                    )
                    stream = stub.Subscribe(request)
                    await channel.channel_ready()
                    self.connected.add(address)
                    attempt = 0
                    async for response in stream:
                        for message in delivered(response):
                            await self._route(message)
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "Subscribe stream ended; resuming from the cursors",
                    extra={"address": address, "code": error.code().name},
                )
            self.connected.discard(address)
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, 0.1, 2.0, self.rng))

    async def _route(self, message: message_pb2.AddressedMessage) -> None:
        worker = self.workers.get(message.bot_id)
        if worker is None:
            # Not this relay's bot (yet): its owner delivers it, or this relay reads it
            # from the store once it takes the bot.
            config = await self.bot_config(message.bot_id)
            if config is None or config.webhook_url is None:
                return  # not a webhook bot
            self.first_seen.setdefault(message.bot_id, message.sequence)
            self.ownership.notice(message.bot_id)
            return
        worker.offer(from_stream(message))

    # -- one delivery ----------------------------------------------------------------

    async def bot_config(self, bot_id: str) -> BotConfig | None:
        cached = self._configs.get(bot_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.config.config_refresh_seconds:
            return cached[1]
        config = await self.retrying(lambda: self.store.get_bot_config(bot_id), "get_bot_config")
        self._configs[bot_id] = (now, config)
        return config

    async def deliver(self, worker: BotWorker, item: Item) -> None:
        """POSTs until a 2xx (then sends the reply it carried) or until the policy gives
        the message up (then stores it as a dead letter); then moves the cursor."""
        worker.delivering = True
        first_attempt: datetime | None = None
        started = time.monotonic()
        attempt = 0
        reply: Reply | None = None
        while True:
            config = await self.bot_config(item.bot_id)
            if config is None or config.webhook_url is None or config.webhook_secret is None:
                self.metrics.deliveries.labels("skipped_no_webhook", "none").inc()
                break
            if not self.ownership.holds(item.bot_id):
                # Not renewed in time: another relay may own the bot by now.
                raise LeaseLostError(item.bot_id)
            attempt += 1
            attempted_at = datetime.now(UTC)
            first_attempt = first_attempt or attempted_at
            age = (attempted_at - item.originating_time).total_seconds()
            self.metrics.lag_seconds.labels(item.bot_id).set(max(0.0, age))
            result = await self.poster.post(
                config.webhook_url,
                config.webhook_secret,
                item.idempotency_key,
                item.body,
                attempt,
            )
            self.metrics.deliveries.labels(result.outcome, result.status_class).inc()
            if result.delivered:
                self.metrics.failing.labels(item.bot_id).set(0)
                reply = self._reply_in(item, result)
                break
            self.metrics.failing.labels(item.bot_id).set(1)
            delay = self._retry_delay(attempt, result)
            if self._gives_up(attempt, result, time.monotonic() - started + delay):
                await self._dead_letter(item, result, attempt, first_attempt, attempted_at)
                break
            log.info(
                "webhook delivery failed; retrying",
                extra={
                    "bot_id": item.bot_id,
                    "key": item.idempotency_key,
                    "outcome": result.outcome,
                    "status": result.status,
                    "attempt": attempt,
                },
            )
            await asyncio.sleep(delay)
        if reply is not None:
            await self._send_reply(item, reply)
        await self.retrying(
            lambda: self.store.advance_cursor(
                self.config.consumer_name, item.bot_id, item.sequence
            ),
            "advance_cursor",
        )
        worker.cursor = item.sequence
        worker.delivering = False
        self.metrics.lag_messages.labels(item.bot_id).set(worker.last_seen - worker.cursor)

    def _retry_delay(self, attempt: int, result: Attempt) -> float:
        delay = backoff_delay(
            attempt, self.config.backoff_base_seconds, self.config.backoff_max_seconds, self.rng
        )
        if result.retry_after is not None:
            # Honoured up to the backoff ceiling: a receiver cannot park a bot for hours.
            delay = max(delay, min(result.retry_after, self.config.backoff_max_seconds))
        return delay

    def _gives_up(self, attempt: int, result: Attempt, next_attempt_after: float) -> bool:
        if result.permanent and attempt >= self.config.permanent_failure_attempts:
            return True
        return (
            attempt >= self.config.max_attempts
            or next_attempt_after > self.config.max_retry_seconds
        )

    def _reply_in(self, item: Item, result: Attempt) -> Reply | None:
        if result.reason:  # a delivered attempt has a reason only when its answer was cut
            self.metrics.replies.labels("too_large").inc()
            log.warning(
                "webhook answer too large; delivered without its reply",
                extra={"bot_id": item.bot_id, "key": item.idempotency_key},
            )
        try:
            return reply_of(result.payload)
        except ValueError as error:
            self.metrics.replies.labels("invalid").inc()
            log.warning(
                "webhook answered with an invalid reply; delivered without it",
                extra={"bot_id": item.bot_id, "key": item.idempotency_key, "error": str(error)},
            )
            return None

    async def _dead_letter(
        self,
        item: Item,
        result: Attempt,
        attempts: int,
        first_attempt: datetime,
        last_attempt: datetime,
    ) -> None:
        letter = WebhookDeadLetter(
            bot_id=item.bot_id,
            sequence=item.sequence,
            correspondent_id=item.correspondent_id,
            body=item.body.decode(),
            attempts=attempts,
            outcome=result.outcome,
            status=result.status,
            reason=bounded_reason(result.reason),
            first_attempt_at=first_attempt,
            last_attempt_at=last_attempt,
            dead_lettered_at=datetime.now(UTC),
        )
        await self.retrying(
            lambda: self.store.put_webhook_dead_letter(letter), "put_webhook_dead_letter"
        )
        self.metrics.dead_letters.labels(result.outcome).inc()
        self.metrics.dead_letters_waiting.labels(item.bot_id).inc()
        log.error(
            "webhook delivery given up; kept as a dead letter",
            extra={
                "bot_id": item.bot_id,
                "key": item.idempotency_key,
                "outcome": result.outcome,
                "status": result.status,
                "attempts": attempts,
                "reason": letter.reason,
            },
        )

    async def _watch_dead_letters(self) -> None:
        """Exports the dead letters kept per bot, and clears a bot's failing flag once an
        operator has retried or skipped all of them while nothing of it is in flight."""
        while True:
            try:
                counts = await self.store.webhook_dead_letter_counts()
            except Exception as error:  # a store outage only delays the gauge
                log.warning("dead letter count failed", extra={"error": str(error)})
            else:
                for bot_id in set(counts) | set(self.workers):
                    count = counts.get(bot_id, 0)
                    self.metrics.dead_letters_waiting.labels(bot_id).set(count)
                    worker = self.workers.get(bot_id)
                    if count == 0 and worker is not None and not worker.delivering:
                        self.metrics.failing.labels(bot_id).set(0)
            await asyncio.sleep(self.config.config_refresh_seconds)

    async def _send_reply(self, item: Item, reply: Reply) -> None:
        """Through the gateway's outbox (POST /bots/{id}/messages), under a key derived
        from the delivered message: a redelivered message's reply is the same message, so
        it reaches WhatsApp once, whichever gateway replica takes it."""
        url = f"{self.config.gateway_url}/bots/{item.bot_id}/messages"
        body = reply.request(item.correspondent_id)
        headers = {
            "Authorization": f"Bearer {self.config.gateway_api_token}",
            "Idempotency-Key": f"reply:{item.sequence}",
        }
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                async with self.http.post(
                    url,
                    data=json.dumps(body),
                    headers={**headers, "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds * 2),
                ) as response:
                    detail = await response.text()
                    if response.status in (200, 202):
                        self.metrics.replies.labels("accepted").inc()
                        return
                    if response.status == 409:
                        # A redelivery answered differently: the first reply stands.
                        self.metrics.replies.labels("duplicate").inc()
                        log.info(
                            "a webhook reply for an already answered message; the first stands",
                            extra={"key": item.idempotency_key},
                        )
                        return
                    if 400 <= response.status < 500:
                        self.metrics.replies.labels("refused").inc()
                        log.error(
                            "the gateway refused a webhook reply; dropped",
                            extra={
                                "key": item.idempotency_key,
                                "status": response.status,
                                "detail": detail[:500],
                            },
                        )
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            self.metrics.replies.labels("retried").inc()
            await asyncio.sleep(
                backoff_delay(
                    attempt,
                    self.config.backoff_base_seconds,
                    self.config.backoff_max_seconds,
                    self.rng,
                )
            )
        self.metrics.replies.labels("failed").inc()
        log.error(
            "a webhook reply could not be sent through the gateway; given up",
            extra={"key": item.idempotency_key, "attempts": REPLY_ATTEMPTS},
        )

    async def retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Store calls are retried with backoff: the relay never skips over a failure."""
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as error:  # any store failure is retried, never skipped
                attempt += 1
                log.warning(
                    "store call failed; retrying", extra={"call": what, "error": str(error)}
                )
                await asyncio.sleep(backoff_delay(attempt, 0.1, 5.0, self.rng))
