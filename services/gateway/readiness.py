"""Whether the gateway can do its job now: every queue_svc shard and the store answer.

Liveness (`/healthz`) only says the process runs; readiness (`/readyz`) says frames
would be accepted rather than answered RETRY, so a load balancer or an operator can
tell an outage from a healthy idle gateway. Checked on request, under a timeout.
"""

from __future__ import annotations

import asyncio

import grpc
from chatbot.queue.v1 import queue_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.health import ProbedStore, store_reachable
from services.common.queue_shards import QueueShards

QUEUE_SERVICE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name


class Readiness:
    def __init__(self, store: ProbedStore, shards: QueueShards, timeout_seconds: float) -> None:
        self._store = store
        self._shards = shards
        self._timeout = timeout_seconds

    async def problems(self) -> list[str]:
        """Empty when ready; otherwise one line per dependency that is not."""
        store = store_reachable(self._store, self._timeout)
        shards = [self._shard_problem(i) for i in range(self._shards.count)]
        found = await asyncio.gather(store, *shards)
        return [problem for problem in found if problem is not None]

    async def _shard_problem(self, index: int) -> str | None:
        name = f"queue_svc shard {index} ({self._shards.addresses.addresses[index]})"
        stub = health_pb2_grpc.HealthStub(self._shards.channel(index))
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=QUEUE_SERVICE), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            return f"{name}: {error.code().name}"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            return f"{name}: {status}"
        return None
