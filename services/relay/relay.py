"""The webhook relay: every queue_svc shard's resumable Subscribe → one worker per bot
that POSTs each message to the bot's webhook, in sequence order, until a 2xx.

Cursors (the last sequence delivered per bot) live in the store under the relay's
consumer name; Subscribe resumes from them (server-side, `consumer_name`) after a relay
restart, and from the workers' positions after a stream outage. A cursor moves only
after a 2xx (and the reply it carried, if any, was handed to the gateway), so delivery
is at least once; every attempt of one message carries the same idempotency key
`<bot_id>:<sequence>` and the same body.

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

from services.common.store import BotConfig, BotConfigStore, MessageStore
from services.relay.config import RelayConfig
from services.relay.metrics import RelayMetrics
from services.relay.payload import Item, Reply, from_store, from_stream, reply_of
from services.relay.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

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


class RelayStore(BotConfigStore, MessageStore, Protocol):
    """Bots' webhook settings, their messages and the relay's delivery cursors."""


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
        metrics: RelayMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.http = http
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.workers: dict[str, BotWorker] = {}
        self.cursors: dict[str, int] = {}
        self._configs: dict[str, tuple[float, BotConfig | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connected: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.cursors = await self.store.delivery_cursors(self.config.consumer_name)
        self._tasks = [
            asyncio.create_task(self._subscribe(address), name=f"relay.subscribe:{address}")
            for address in self.config.queue_shards.addresses
        ]

    async def stop(self) -> None:
        tasks = self._tasks + [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the streams -----------------------------------------------------------------

    async def _subscribe(self, address: str) -> None:
        attempt = 0
        while True:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = q_grpc.QueueServiceStub(channel)
                    request = q.SubscribeRequest(
                        consumer_name=self.config.consumer_name,
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
                        await self._route(response.message)
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
            config = await self.bot_config(message.bot_id)
            if config is None or config.webhook_url is None:
                return  # not a webhook bot
            cursor = self.cursors.get(message.bot_id)
            if cursor is None:
                # A webhook bot without a cursor: it starts where the webhook was
                # configured (the gateway records that sequence), else just before this
                # message; stored now, so a relay restart resumes from there.
                since = config.webhook_since_sequence
                start = since if since is not None else message.sequence - 1
                await self.retrying(
                    lambda: self.store.advance_cursor(
                        self.config.consumer_name, message.bot_id, start
                    ),
                    "advance_cursor",
                )
                cursor = start
            worker = BotWorker(self, message.bot_id, cursor)
            # Messages between the cursor and this one were not streamed to this relay
            # (before it saw the bot): the worker reads them from the store first.
            worker.behind = message.sequence > cursor + 1
            self.workers[message.bot_id] = worker
            worker.task = asyncio.create_task(worker.run(), name=f"relay.bot:{message.bot_id}")
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
        """POSTs until a 2xx, then sends the reply it carried, then moves the cursor."""
        attempt = 0
        reply: Reply | None = None
        while True:
            config = await self.bot_config(item.bot_id)
            if config is None or config.webhook_url is None or config.webhook_secret is None:
                self.metrics.deliveries.labels("skipped_no_webhook").inc()
                break
            attempt += 1
            age = (datetime.now(UTC) - item.originating_time).total_seconds()
            self.metrics.lag_seconds.labels(item.bot_id).set(max(0.0, age))
            outcome, payload = await self._post(config, item, attempt)
            self.metrics.deliveries.labels(outcome).inc()
            if outcome == "delivered":
                try:
                    reply = reply_of(payload)
                except ValueError as error:
                    self.metrics.replies.labels("invalid").inc()
                    log.warning(
                        "webhook answered with an invalid reply; delivered without it",
                        extra={
                            "bot_id": item.bot_id,
                            "key": item.idempotency_key,
                            "error": str(error),
                        },
                    )
                break
            log.info(
                "webhook delivery failed; retrying",
                extra={"bot_id": item.bot_id, "key": item.idempotency_key, "outcome": outcome},
            )
            await asyncio.sleep(
                backoff_delay(
                    attempt,
                    self.config.backoff_base_seconds,
                    self.config.backoff_max_seconds,
                    self.rng,
                )
            )
        if reply is not None:
            await self._send_reply(item, reply)
        await self.retrying(
            lambda: self.store.advance_cursor(
                self.config.consumer_name, item.bot_id, item.sequence
            ),
            "advance_cursor",
        )
        worker.cursor = item.sequence
        self.metrics.lag_messages.labels(item.bot_id).set(worker.last_seen - worker.cursor)

    async def _post(self, config: BotConfig, item: Item, attempt: int) -> tuple[str, bytes]:
        assert config.webhook_url is not None and config.webhook_secret is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(config.webhook_secret, timestamp, item.body),
            IDEMPOTENCY_HEADER: item.idempotency_key,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self.http.post(
                config.webhook_url,
                data=item.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            ) as response:
                payload = await response.read()
                if 200 <= response.status < 300:
                    return "delivered", payload
                return f"http_{response.status}", b""
        except TimeoutError:
            return "timeout", b""
        except aiohttp.ClientError:
            return "connection_error", b""

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
