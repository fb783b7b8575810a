"""Writes incoming frames to their bot's queue_svc shard: text in batches, media one by one.

Every call answers with the acknowledgement Node should get; nothing here raises for
an expected outcome, so the WebSocket handler stays a thin loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from chatbot.wire.v1 import frames_pb2 as w

from services.common.call_batcher import CallBatcher
from services.common.errors import InvalidInputError, PreconditionError
from services.common.grpc_edge import error_for_status, status_of
from services.common.queue_shards import QueueShards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AckOutcome:
    status: w.AckStatus.ValueType
    reason: str | None = None


ACCEPTED = AckOutcome(w.ACK_STATUS_ACCEPTED)
DUPLICATE = AckOutcome(w.ACK_STATUS_DUPLICATE)


def outcome_for_rpc_error(error: grpc.aio.AioRpcError, bot_id: str) -> AckOutcome:
    """Malformed requests are final; everything else is worth resending later."""
    return outcome_for_status(error.code(), error.details() or "", bot_id)


def outcome_for_status(code: grpc.StatusCode, details: str, bot_id: str) -> AckOutcome:
    """The same, for a status code (a failed call, or one item of a batched call)."""
    detail = details or code.name
    meaning = error_for_status(code, detail)
    if isinstance(meaning, InvalidInputError):
        return AckOutcome(w.ACK_STATUS_REJECTED, detail)
    if isinstance(meaning, PreconditionError):
        return AckOutcome(
            w.ACK_STATUS_RETRY,
            f"bot {bot_id!r} is not active ({detail}); start it with POST /bots/{bot_id}/start",
        )
    return AckOutcome(w.ACK_STATUS_RETRY, f"queue_svc {code.name}: {detail}")


_ADD_STATUS = {
    q.ADD_STATUS_ADDED: ACCEPTED,
    q.ADD_STATUS_DUPLICATE: DUPLICATE,
}


@dataclass(slots=True)
class _Pending:
    request: q.AddMessageRequest
    # Called once with the item's outcome, from the shard's flusher.
    done: Callable[[AckOutcome], None]
    # The request's encoded size, which bounds a batch's.
    size: int = 0


#: The most encoded bytes of messages in one AddMessages call. queue_svc takes gRPC
#: messages of up to 4 MiB; a text frame may be 256 KiB, so a batch bounded only by
#: its count could exceed that, be refused whole, and come back refused again on every
#: resend. The rest of the request (tags, lengths) is a few bytes per message.
MAX_BATCH_BYTES = 3 * 1024 * 1024


# How long a chat stays held for a message that got RETRY and has not come back: Node
# resends within its retry backoff (30 s at most), so only a Node that lost its outbox
# leaves a hold to expire.
HOLD_SECONDS = 120.0


class ChatHolds:
    """Keeps one chat's messages in order while Node has several of them in flight.

    Once a message of a chat is answered RETRY, every later message of that chat is
    answered RETRY too, until that message comes back (by WhatsApp id) and is decided
    otherwise; Node then resends the chat from its oldest pending frame. Batches are
    decided one after another, so what is held is known before the next batch goes out.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[str, float]] = {}

    def admit(self, batch: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """(sent, held back): a held chat's messages wait until the one it waits for,
        which goes out with everything after it in the same batch."""
        if not self._held:
            return batch, []  # the common case, and a walk per frame otherwise
        sent: list[_Pending] = []
        held_back: list[_Pending] = []
        released: set[tuple[str, str]] = set()
        now = self._clock()
        for item in batch:
            chat = (item.request.bot_id, item.request.correspondent_id)
            hold = self._held.get(chat)
            if hold is not None and now - hold[1] > HOLD_SECONDS:
                del self._held[chat]
                hold = None
            if hold is None or chat in released:
                sent.append(item)
            elif item.request.message.provider_message_id == hold[0]:
                released.add(chat)
                sent.append(item)
            else:
                held_back.append(item)
        return sent, held_back

    def decided(self, item: _Pending, outcome: AckOutcome) -> None:
        if outcome.status != w.ACK_STATUS_RETRY and not self._held:
            return  # nothing held, nothing to hold: once per frame
        chat = (item.request.bot_id, item.request.correspondent_id)
        pid = item.request.message.provider_message_id
        if outcome.status == w.ACK_STATUS_RETRY:
            if pid and chat not in self._held:
                self._held[chat] = (pid, self._clock())
        elif chat in self._held and self._held[chat][0] == pid:
            del self._held[chat]


# Placeholders of one event-loop turn per InjectPlaceholders call, at most this many.
MAX_PLACEHOLDER_BATCH = 256
# Answers of a batched call that are not the item's fault: the unary call is made
# instead (one bad item must not refuse its neighbours; a queue_svc from before the
# batched calls answers UNIMPLEMENTED).
_UNBATCH = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED})

WAITING = AckOutcome(
    w.ACK_STATUS_RETRY, "an earlier message of this chat is waiting to be resent; resend in order"
)


class QueueWriter:
    """Writes each frame to its bot's queue_svc shard.

    Text messages arriving within a short window are coalesced into one AddMessages call
    per shard: a batch never mixes shards, and each shard's single flusher sends its
    batches one after another, so messages keep the order in which frames arrived (a
    chat belongs to one bot, hence to one shard). Media placeholders go straight
    through (their order relative to text is not preserved by design).
    """

    def __init__(
        self,
        shards: QueueShards,
        *,
        window_seconds: float,
        max_batch: int,
        timeout_seconds: float,
    ) -> None:
        self._shards = shards
        self._timeout = timeout_seconds
        self._batchers = [
            _ShardBatcher(
                shards.stub(i),
                window_seconds=window_seconds,
                max_batch=max_batch,
                timeout_seconds=timeout_seconds,
                name=f"queue-writer-{i}",
            )
            for i in range(shards.count)
        ]
        self._placeholders = [
            CallBatcher(
                functools.partial(self._inject_batch, i),
                max_batch=MAX_PLACEHOLDER_BATCH,
                size=q.InjectPlaceholderRequest.ByteSize,
            )
            for i in range(shards.count)
        ]
        self._closed = False

    def start(self) -> None:
        for batcher in self._batchers:
            batcher.start()

    async def close(self) -> None:
        """Sends what is queued on every shard, then stops. Safe to call twice."""
        self._closed = True
        await asyncio.gather(*(b.close() for b in self._batchers))
        await asyncio.gather(*(b.close() for b in self._placeholders))

    async def add_text(self, request: q.AddMessageRequest) -> AckOutcome:
        done: asyncio.Future[AckOutcome] = asyncio.get_running_loop().create_future()
        self.submit_text(request, functools.partial(_resolve, done))
        return await done

    def submit_text(
        self, request: q.AddMessageRequest, on_done: Callable[[AckOutcome], None]
    ) -> None:
        """`add_text` without a coroutine: `on_done` gets the outcome once decided (at once
        when the gateway is shutting down). The frame handler's hot path: a task and a
        future per text frame cost more than the frame's own bookkeeping."""
        if self._closed:
            on_done(AckOutcome(w.ACK_STATUS_RETRY, "gateway is shutting down"))
            return
        self._batchers[self._shards.index_for(request.bot_id)].submit(request, on_done)

    async def inject_placeholder(self, request: q.InjectPlaceholderRequest) -> AckOutcome:
        batcher = self._placeholders[self._shards.index_for(request.bot_id)]
        try:
            result = await batcher.call(request)
        except grpc.aio.AioRpcError as error:
            return outcome_for_rpc_error(error, request.bot_id)
        if result.code != grpc.StatusCode.OK.value[0]:
            return outcome_for_status(status_of(result.code), result.error, request.bot_id)
        return DUPLICATE if result.response.duplicate else ACCEPTED

    async def _inject_batch(
        self, shard: int, requests: list[q.InjectPlaceholderRequest]
    ) -> list[q.InjectPlaceholdersResult]:
        stub = self._shards.stub(shard)
        try:
            reply = await stub.InjectPlaceholders(
                q.InjectPlaceholdersRequest(placeholders=requests), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in _UNBATCH:
                raise
            # One after another, in order, as the batch would have been taken.
            return [await _inject_one(stub, r, self._timeout) for r in requests]
        return list(reply.results)

    async def learn_identities(self, request: q.LearnIdentitiesRequest) -> AckOutcome:
        """Pairs go to the bot's shard (the owner of its queues and of the merge);
        accepted once the shard has them in the store."""
        stub = self._shards.stub_for(request.bot_id)
        try:
            await stub.LearnIdentities(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            return outcome_for_rpc_error(error, request.bot_id)
        return ACCEPTED


class _ShardBatcher:
    """The AddMessages batches of one shard: one flusher, batches in arrival order."""

    def __init__(
        self,
        stub: q_grpc.QueueServiceAsyncStub,
        *,
        window_seconds: float,
        max_batch: int,
        timeout_seconds: float,
        name: str,
    ) -> None:
        self._stub = stub
        self._window = window_seconds
        self._max_batch = max_batch
        self._timeout = timeout_seconds
        self._name = name
        self._pending: list[_Pending] = []
        self._holds = ChatHolds()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(), name=self._name)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._flusher is not None:
            await self._flusher
            self._flusher = None

    def submit(self, request: q.AddMessageRequest, on_done: Callable[[AckOutcome], None]) -> None:
        self._pending.append(_Pending(request, on_done, request.ByteSize()))
        if not self._wakeup.is_set():
            self._wakeup.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._pending and self._closed:
                return
            if len(self._pending) < self._max_batch and not self._closed:
                # Give concurrent frames a moment to join this batch.
                await asyncio.sleep(self._window)
            count = self._batch_count()
            batch = self._pending[:count]
            del self._pending[:count]
            if not self._pending:
                self._wakeup.clear()
            batch, held_back = self._holds.admit(batch)
            for item in held_back:
                _call(item.done, WAITING)
            if batch:
                await self._send(batch)

    def _batch_count(self) -> int:
        """How many pending messages the next batch takes: up to `max_batch`, and up to
        MAX_BATCH_BYTES (always at least one)."""
        size = 0
        count = 0
        for item in self._pending[: self._max_batch]:
            size += item.size
            if size > MAX_BATCH_BYTES and count:
                break
            count += 1
        return count

    async def _send(self, batch: list[_Pending]) -> None:
        request = q.AddMessagesRequest(messages=[p.request for p in batch])
        try:
            reply = await self._stub.AddMessages(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(batch) > 1:
                # One bad item must not refuse its neighbours: resend one by one.
                for item in batch:
                    await self._send([item])
                return
            for item in batch:
                self._decide(item, outcome_for_rpc_error(error, item.request.bot_id))
            return
        if len(reply.results) != len(batch):
            log.error("AddMessages answered %d results for %d", len(reply.results), len(batch))
            for item in batch:
                self._decide(item, AckOutcome(w.ACK_STATUS_RETRY, "queue_svc answer mismatch"))
            return
        for item, result in zip(batch, reply.results, strict=True):
            outcome = _ADD_STATUS.get(result.status) or AckOutcome(
                w.ACK_STATUS_RETRY,
                f"bot {item.request.bot_id!r} is not active; "
                f"start it with POST /bots/{item.request.bot_id}/start",
            )
            self._decide(item, outcome)

    def _decide(self, item: _Pending, outcome: AckOutcome) -> None:
        self._holds.decided(item, outcome)
        _call(item.done, outcome)


async def _inject_one(
    stub: q_grpc.QueueServiceAsyncStub, request: q.InjectPlaceholderRequest, seconds: float
) -> q.InjectPlaceholdersResult:
    """InjectPlaceholder for one item, answered as an item of the batched call."""
    try:
        reply = await stub.InjectPlaceholder(request, timeout=seconds)
    except grpc.aio.AioRpcError as error:
        return q.InjectPlaceholdersResult(code=error.code().value[0], error=error.details() or "")
    return q.InjectPlaceholdersResult(response=reply)


def _call(done: Callable[[AckOutcome], None], outcome: AckOutcome) -> None:
    # Runs in the shard's flusher: a failing callback must not stop the batches of
    # every other frame.
    try:
        done(outcome)
    except Exception:
        log.exception("answering a text frame failed")


def _resolve(future: asyncio.Future[AckOutcome], outcome: AckOutcome) -> None:
    # The waiting frame handler may have been cancelled (socket closed); that is fine.
    # A check, not contextlib.suppress: this runs once per text frame.
    if not future.done():
        future.set_result(outcome)
