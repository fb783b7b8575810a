"""Delivery from the durable outbox to Node.

Any gateway replica accepts a send (bot_api.py stores it as pending); the replica that
holds the bot's Node connection streams the bot's pending messages to Node, one at a
time in the order they were accepted, and records the outcome Node reports
(OutgoingResult). It wakes on a local insert or a new Node connection, and scans the
store every `scan_seconds` for messages another replica accepted, or that were pending
before a restart.

A message stays pending until its result is recorded, so it may be streamed again after
a timeout, a reconnect or a restart. That costs no second WhatsApp message: Node answers
a key it already sent from its memory, and a message is sent under the WhatsApp id
derived from its key, so even a resend after a crash between sending and recording is
the same message to WhatsApp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import ChatbotError, UnavailableError
from services.common.store import OutboxStatus, OutboxStore
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_link import NodeLink

log = logging.getLogger(__name__)

#: Pending messages read per store query while draining one bot.
BATCH = 20


class OutboxDelivery:
    def __init__(
        self,
        store: OutboxStore,
        link: NodeLink,
        metrics: GatewayMetrics,
        *,
        scan_seconds: float,
        result_timeout_seconds: float,
    ) -> None:
        self._store = store
        self._link = link
        self._metrics = metrics
        self._scan_seconds = scan_seconds
        self._result_timeout = result_timeout_seconds
        self._wakeup = asyncio.Event()
        self._bots: dict[str, asyncio.Task[None]] = {}
        self._results: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def connection_lost(self) -> None:
        """A Node connection closed: results awaited through it may never come, so the
        bots waiting for one stop waiting (their messages stay pending for the next scan,
        and Node does not post a key twice)."""
        for waiter in self._results.values():
            if not waiter.done():
                waiter.set_exception(UnavailableError("the Node connection closed"))
        self.wake()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-delivery")

    async def close(self) -> None:
        """Stops scanning and sending; pending messages stay in the store. Safe twice."""
        tasks = [t for t in (self._task, *self._bots.values()) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands as the wake-up fires (a Node disconnecting at SIGTERM), and close()
            # then waited for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._scan_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._link.connection_count == 0:
                continue
            try:
                bots = await self._store.bots_with_pending_outgoing()
            except Exception as error:  # any failure: the next scan tries again
                # The store is down: nothing is lost, the messages wait in it.
                log.warning("outbox scan failed: %r", error)
                continue
            for bot_id in bots:
                if bot_id in self._bots or not self._link.serves(bot_id):
                    continue
                task = asyncio.create_task(self._drain(bot_id), name=f"outbox-{bot_id}")
                self._bots[bot_id] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for bot_id, running in list(self._bots.items()):
            if running is task:
                del self._bots[bot_id]

    async def _drain(self, bot_id: str) -> None:
        """Streams the bot's pending messages until none is left or Node cannot take more
        now (the next scan tries again)."""
        try:
            while self._link.serves(bot_id):
                records = await self._store.pending_outgoing(bot_id, BATCH)
                if not records:
                    return
                for record in records:
                    if record.payload is None or not await self._send(
                        w.OutgoingMessage.FromString(record.payload)
                    ):
                        return
        except ChatbotError as error:
            log.info("outbox delivery of bot %s paused: %s", bot_id, error)
        except Exception:
            log.exception("outbox delivery of bot %s failed; the next scan retries", bot_id)

    async def _send(self, message: w.OutgoingMessage) -> bool:
        """One message to Node; True when its outcome is recorded and the next may go."""
        key = (message.bot_id, message.idempotency_key)
        result = asyncio.get_running_loop().create_future()
        self._results[key] = result
        try:
            ack = await self._link.send_outgoing(message)
            self._metrics.outgoing.labels("streamed").inc()
            if ack.status == w.ACK_STATUS_REJECTED:
                # Node refused the frame itself: resending it cannot help.
                reason = f"Node refused the message: {ack.reason}"[:1024]
                await self._finish(
                    message.bot_id, message.idempotency_key, OutboxStatus.FAILED, None, reason
                )
                return True
            if ack.status == w.ACK_STATUS_RETRY:
                self._metrics.outgoing.labels("retry").inc()
                log.info("Node cannot send for bot %s now: %s", message.bot_id, ack.reason)
                return False
            try:
                await asyncio.wait_for(asyncio.shield(result), self._result_timeout)
            except UnavailableError:
                return False
            except TimeoutError:
                log.warning(
                    "no result for outgoing %r of bot %s within %g s; it stays pending",
                    message.idempotency_key,
                    message.bot_id,
                    self._result_timeout,
                )
                return False
            return True
        finally:
            if self._results.get(key) is result:
                del self._results[key]
            if result.done() and not result.cancelled():
                result.exception()  # retrieved: a lost connection here is no error to log

    async def record_result(self, result: w.OutgoingResult) -> None:
        """Node's outcome of one message, recorded before Node's frame is acknowledged."""
        status = (
            OutboxStatus.SENT if result.status == w.OUTGOING_STATUS_SENT else OutboxStatus.FAILED
        )
        await self._finish(
            result.bot_id,
            result.idempotency_key,
            status,
            result.provider_message_id if result.HasField("provider_message_id") else None,
            result.reason if result.HasField("reason") else None,
        )
        waiter = self._results.get((result.bot_id, result.idempotency_key))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _finish(
        self,
        bot_id: str,
        key: str,
        status: OutboxStatus,
        provider_message_id: str | None,
        reason: str | None,
    ) -> None:
        if await self._store.finish_outgoing(bot_id, key, status, provider_message_id, reason):
            self._metrics.outgoing.labels(str(status)).inc()
            if status is OutboxStatus.FAILED:
                log.warning("outgoing %r of bot %s failed: %s", key, bot_id, reason)
