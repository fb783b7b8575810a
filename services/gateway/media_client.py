"""The gateway's call of media_svc's GetPoolStats on every replica it is given
(GATEWAY_MEDIA_SVC_ADDRESSES): a replica's in-flight count and concurrency are its own;
the depths come from the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc


@dataclass(frozen=True, slots=True)
class ReplicaPool:
    replica: str
    pool: str
    processor: str
    in_flight: int
    concurrency: int


class MediaClient:
    def __init__(self, addresses: Sequence[str], timeout_seconds: float) -> None:
        self._addresses = list(addresses)
        self._timeout = timeout_seconds
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def _stub(self, address: str) -> media_service_pb2_grpc.MediaServiceAsyncStub:
        if address not in self._channels:
            # Made on first use: the channel belongs to the running loop.
            self._channels[address] = grpc.aio.insecure_channel(address)
        stub: media_service_pb2_grpc.MediaServiceAsyncStub = (
            media_service_pb2_grpc.MediaServiceStub(self._channels[address])
        )
        return stub

    async def replica_pools(self) -> tuple[list[ReplicaPool], list[str]]:
        """Every reachable replica's pools, and a line per replica that did not answer."""
        pools: list[ReplicaPool] = []
        problems: list[str] = []
        for address in self._addresses:
            try:
                stats = await self._stub(address).GetPoolStats(
                    media_service_pb2.GetPoolStatsRequest(), timeout=self._timeout
                )
            except grpc.aio.AioRpcError as error:
                problems.append(f"media_svc {address}: {error.code().name} {error.details()}")
                continue
            pools += [
                ReplicaPool(address, p.pool, p.processor, p.in_flight, p.concurrency)
                for p in stats.pools
            ]
        return pools, problems

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
