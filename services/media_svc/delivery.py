"""The QueueService client media_svc uses to resolve placeholders (the gRPC edge).

Every call goes to the queue_svc shard of the job's bot (services.common.sharding):
the worker's UpdateByMediaId, the redelivery sweep, the cleanup's deliveries and the
requeue's activity check all pass through here.

UpdateByMediaId outcomes are returned as a plain enum. A queue_svc that cannot be
reached is retried with backoff until it answers or the caller is cancelled: the result
is already persisted, so waiting loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum

import grpc
from chatbot.queue.v1 import queue_service_pb2

from services.common.errors import ChatbotError
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


class DeliveryStatus(Enum):
    UPDATED = "updated"
    NOT_FOUND = "not_found"
    BOT_NOT_ACTIVE = "bot_not_active"


class DeliveryRejectedError(ChatbotError):
    """queue_svc refused the update for good (e.g. INVALID_ARGUMENT): retrying won't help."""


class QueueDelivery:
    def __init__(
        self,
        addresses: ShardAddresses | str,
        metrics: MediaMetrics,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
        rpc_timeout: float = 10.0,
    ) -> None:
        if isinstance(addresses, str):
            addresses = ShardAddresses.parse(addresses)
        self._shards = QueueShards(addresses)
        self._metrics = metrics
        self._base = backoff_base
        self._max = backoff_max
        self._timeout = rpc_timeout

    async def update(self, job: MediaJob, content: str) -> DeliveryStatus:
        request = queue_service_pb2.UpdateByMediaIdRequest(
            bot_id=job.bot_id,
            correspondent_id=job.correspondent_id,
            media_processing_id=job.media_processing_id,
            content=content,
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._shards.stub_for(job.bot_id).UpdateByMediaId(
                    request, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise DeliveryRejectedError(
                        f"UpdateByMediaId {exc.code().name}: {exc.details()}"
                    ) from exc
                delay = backoff_delay(attempt, self._base, self._max)
                log.log(
                    logging.WARNING if attempt in (1, 10) or attempt % 100 == 0 else logging.DEBUG,
                    "%s unreachable for %s (%s, attempt %d); retrying in %.2fs",
                    self._shards.describe(job.bot_id),
                    job.media_processing_id,
                    exc.code().name,
                    attempt,
                    delay,
                )
                self._metrics.delivery_retries.inc()
                await asyncio.sleep(delay)
                continue
            if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_UPDATED:
                return DeliveryStatus.UPDATED
            if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE:
                return DeliveryStatus.BOT_NOT_ACTIVE
            if response.status == _STATUSES.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND:
                return DeliveryStatus.NOT_FOUND
            raise DeliveryRejectedError(
                f"UpdateByMediaId answered unknown status {response.status}"
            )

    async def close(self) -> None:
        await self._shards.close()
