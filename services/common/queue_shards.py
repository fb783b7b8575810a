"""gRPC clients of the queue_svc shards: one channel per shard, the bot's stub on demand.

Used by every caller of queue_svc (gateway, media_svc); the map itself is
`services.common.sharding`.
"""

from __future__ import annotations

import grpc
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.sharding import ShardAddresses

# gRPC's default reconnect backoff grows to 120 s; a restarted shard should be used
# again within seconds, since writes to it are refused (RETRY) until then.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 3000),
)


class QueueShards:
    """Open channels to every shard in `addresses`; create inside the running loop."""

    def __init__(self, addresses: ShardAddresses) -> None:
        self.addresses = addresses
        self._channels = [
            grpc.aio.insecure_channel(a, options=CHANNEL_OPTIONS) for a in addresses.addresses
        ]
        self._stubs = [q_grpc.QueueServiceStub(c) for c in self._channels]

    @property
    def count(self) -> int:
        return len(self._stubs)

    def index_for(self, bot_id: str) -> int:
        return self.addresses.index_for(bot_id)

    def channel(self, index: int) -> grpc.aio.Channel:
        """The channel to one shard (e.g. for its health service)."""
        return self._channels[index]

    def stub(self, index: int) -> q_grpc.QueueServiceAsyncStub:
        return self._stubs[index]

    def stub_for(self, bot_id: str) -> q_grpc.QueueServiceAsyncStub:
        return self._stubs[self.index_for(bot_id)]

    def describe(self, bot_id: str) -> str:
        """For messages: which shard a bot's calls went to."""
        index = self.index_for(bot_id)
        if self.count == 1:
            return "queue_svc"
        return f"queue_svc shard {index} ({self.addresses.addresses[index]})"

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
