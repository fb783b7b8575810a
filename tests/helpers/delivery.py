"""A bot-logic consumer that keeps its cursors: it resumes Subscribe after every outage
from the last sequence it handled per bot, as a consumer of the delivery contract must."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc


class ResumingSubscriber:
    """Subscribes to every address (queue_svc shard) with its cursors and records every
    message received; `reconnects` counts the stream ends and failed attempts."""

    def __init__(self, addresses: Sequence[str], bots: Sequence[str]) -> None:
        self.addresses = list(addresses)
        # Starting at 0: everything the bots ever persisted is expected.
        self.cursors: dict[str, int] = dict.fromkeys(bots, 0)
        self.messages: list[message_pb2.AddressedMessage] = []
        self.reconnects = 0
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(a)) for a in self.addresses]

    async def _run(self, address: str) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = queue_service_pb2_grpc.QueueServiceStub(channel)
                    request = queue_service_pb2.SubscribeRequest(
                        cursors=[
                            queue_service_pb2.BotCursor(bot_id=bot, after_sequence=after)
                            for bot, after in self.cursors.items()
                        ]
                    )
                    async for response in stub.Subscribe(request):
                        message = response.message
                        # The cursor is the last sequence handled: recorded, then moved.
                        self.messages.append(message)
                        self.cursors[message.bot_id] = message.sequence
                        self.changed.set()
            except grpc.aio.AioRpcError:
                pass
            self.reconnects += 1
            await asyncio.sleep(0.05)

    def sequences(self, bot_id: str) -> list[int]:
        return [m.sequence for m in self.messages if m.bot_id == bot_id]

    async def wait_for(self, bot_id: str, sequence: int, within: float) -> None:
        async with asyncio.timeout(within):
            while self.cursors.get(bot_id, 0) < sequence:
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
