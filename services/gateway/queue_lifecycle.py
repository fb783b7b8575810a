"""StartBot and StopBot on the bot's queue_svc shard, as the HTTP API calls them.

gRPC stays here: a status from queue_svc becomes the domain error it stands for
(services.common.grpc_edge.error_for_status), so the HTTP layer maps domain errors only."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from chatbot.queue.v1 import queue_service_pb2 as q

from services.common.grpc_edge import error_for_status
from services.common.queue_shards import QueueShards

T = TypeVar("T")

# StartBot reloads a bot's windows and jobs: it may take several ordinary RPC timeouts.
LIFECYCLE_TIMEOUT_FACTOR = 6


class QueueLifecycle:
    def __init__(self, queue: QueueShards, rpc_timeout_seconds: float) -> None:
        self._queue = queue
        self._timeout = rpc_timeout_seconds * LIFECYCLE_TIMEOUT_FACTOR

    async def start_bot(self, bot_id: str) -> q.StartBotResponse:
        stub = self._queue.stub_for(bot_id)
        return await _domain(stub.StartBot(q.StartBotRequest(bot_id=bot_id), timeout=self._timeout))

    async def stop_bot(self, bot_id: str) -> q.StopBotResponse:
        stub = self._queue.stub_for(bot_id)
        return await _domain(stub.StopBot(q.StopBotRequest(bot_id=bot_id), timeout=self._timeout))


async def _domain(call: Awaitable[T]) -> T:
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        meaning = error_for_status(error.code(), error.details() or "")
        raise type(meaning)(f"queue_svc {error.code().name}: {error.details()}") from error
