"""The QueueService client media_svc uses to resolve placeholders (the gRPC edge).

Every call goes to the queue_svc shard of the job's bot (services.common.sharding):
the worker's UpdateByMediaId, the redelivery loop, the cleanup's deliveries and the
requeue's activity check all pass through here.

One call is one attempt under a short deadline, never a loop: a worker slot must not
wait for a shard that is down (issue 23). A shard that could not be reached is
`UNREACHABLE` and is left alone for a backoff that grows with its consecutive failures;
until then calls for its bots answer UNREACHABLE at once without touching the network,
so one shard down costs the other shards' bots nothing. The result is persisted before
any delivery, so whoever gets UNREACHABLE leaves it to the redelivery loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import grpc
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc
from google.protobuf import json_format

from services.common.call_batcher import CallBatcher
from services.common.errors import ChatbotError
from services.common.grpc_edge import status_of
from services.common.queue_shards import QueueShards
from services.common.sharding import ShardAddresses
from services.common.store import MediaJob
from services.media_svc.backoff import backoff_delay
from services.media_svc.metrics import MediaMetrics

log = logging.getLogger(__name__)

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
_STATUSES = queue_service_pb2.UpdateByMediaIdStatus
# Results of one event-loop turn per UpdateByMediaIds call, at most this many.
MAX_UPDATE_BATCH = 256
# Answers of a batched call that are not the item's fault: the unary call is made
# instead (one bad item must not refuse its neighbours; a queue_svc from before the
# batched calls answers UNIMPLEMENTED).
_UNBATCH = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED})


class DeliveryStatus(Enum):
    UPDATED = "updated"
    NOT_FOUND = "not_found"
    BOT_NOT_ACTIVE = "bot_not_active"
    # The bot's shard did not answer (or is backing off): try again later.
    UNREACHABLE = "unreachable"


class DeliveryRejectedError(ChatbotError):
    """queue_svc refused the update for good (e.g. INVALID_ARGUMENT): retrying won't help."""


@dataclass(slots=True)
class _ShardState:
    failures: int = 0
    retry_at: float = 0.0


class QueueDelivery:
    def __init__(
        self,
        addresses: ShardAddresses | str,
        metrics: MediaMetrics,
        *,
        rpc_timeout: float = 2.0,
        backoff_base: float = 0.5,
        backoff_max: float = 15.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(addresses, str):
            addresses = ShardAddresses.parse(addresses)
        self._shards = QueueShards(addresses)
        self._metrics = metrics
        self._timeout = rpc_timeout
        self._base = backoff_base
        self._max = backoff_max
        self._now = monotonic
        self._states = [_ShardState() for _ in range(self._shards.count)]
        # The results of one event-loop turn (workers finishing together, a redelivery
        # sweep) go to their shard as one UpdateByMediaIds call.
        self._batchers = [
            CallBatcher(
                functools.partial(self._update_batch, shard),
                max_batch=MAX_UPDATE_BATCH,
                # A document's text may be long: a batch must still fit one gRPC message.
                size=queue_service_pb2.UpdateByMediaIdRequest.ByteSize,
            )
            for shard in range(self._shards.count)
        ]

    def shard_of(self, bot_id: str) -> int:
        return self._shards.index_for(bot_id)

    def reachable(self, bot_id: str) -> bool:
        """False while the bot's shard is backing off after a failure."""
        return self._states[self.shard_of(bot_id)].retry_at <= self._now()

    async def update(
        self, job: MediaJob, content: str, media_result: str | None = None
    ) -> DeliveryStatus:
        """One UpdateByMediaId attempt; DeliveryRejectedError when queue_svc refuses it.
        `media_result` is the job's stored typed values (MediaResult JSON)."""
        shard = self.shard_of(job.bot_id)
        state = self._states[shard]
        if state.retry_at > self._now():
            return DeliveryStatus.UNREACHABLE
        request = queue_service_pb2.UpdateByMediaIdRequest(
            bot_id=job.bot_id,
            correspondent_id=job.correspondent_id,
            media_processing_id=job.media_processing_id,
            content=content,
        )
        if media_result is not None:
            json_format.Parse(media_result, request.media_result, ignore_unknown_fields=True)
        try:
            result = await self._batchers[shard].call(request)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        else:
            code, details = status_of(result.code), result.error
        if code != grpc.StatusCode.OK:
            if code not in _RETRYABLE:
                raise DeliveryRejectedError(f"UpdateByMediaId {code.name}: {details}")
            state.failures += 1
            delay = backoff_delay(state.failures, self._base, self._max)
            state.retry_at = self._now() + delay
            self._metrics.delivery_retries.inc()
            log.log(
                logging.WARNING
                if state.failures in (1, 10) or state.failures % 100 == 0
                else logging.DEBUG,
                "%s unreachable for %s (%s, %d failures in a row); its results wait %.2fs",
                self._shards.describe(job.bot_id),
                job.media_processing_id,
                code.name,
                state.failures,
                delay,
            )
            return DeliveryStatus.UNREACHABLE
        if state.failures:
            log.info("%s answers again", self._shards.describe(job.bot_id))
        state.failures, state.retry_at = 0, 0.0
        response = result.response
        if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_UPDATED:
            return DeliveryStatus.UPDATED
        if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE:
            return DeliveryStatus.BOT_NOT_ACTIVE
        if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND:
            return DeliveryStatus.NOT_FOUND
        raise DeliveryRejectedError(f"UpdateByMediaId answered unknown status {response.status}")

    async def _update_batch(
        self, shard: int, requests: list[queue_service_pb2.UpdateByMediaIdRequest]
    ) -> list[queue_service_pb2.UpdateByMediaIdsResult]:
        stub = self._shards.stub(shard)
        try:
            reply = await stub.UpdateByMediaIds(
                queue_service_pb2.UpdateByMediaIdsRequest(updates=requests), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _UNBATCH:
                raise
            # One after another, in order, as the batch would have been taken.
            return [await _update_one(stub, r, self._timeout) for r in requests]
        return list(reply.results)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self._batchers))
        await self._shards.close()


async def _update_one(
    stub: queue_service_pb2_grpc.QueueServiceAsyncStub,
    request: queue_service_pb2.UpdateByMediaIdRequest,
    seconds: float,
) -> queue_service_pb2.UpdateByMediaIdsResult:
    """UpdateByMediaId for one item, answered as an item of the batched call."""
    try:
        reply = await stub.UpdateByMediaId(request, timeout=seconds)
    except grpc.aio.AioRpcError as exc:
        return queue_service_pb2.UpdateByMediaIdsResult(
            code=exc.code().value[0], error=exc.details() or ""
        )
    return queue_service_pb2.UpdateByMediaIdsResult(response=reply)
