"""Subscribe with max_batch through a real channel, against the real servicer and service
on the real SQLite store: several messages per response, the same order, the same
resume guarantees; without it (0 or 1) one message per response as before."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.subscribe_batches import delivered
from services.queue_svc.service import QueueService
from tests.contract.test_queue_resume import BOT, served
from tests.contract.test_queue_service import add, store, subscribers_reach

if TYPE_CHECKING:
    Stub = q_grpc.QueueServiceAsyncStub

__all__ = ["served", "store"]  # the fixtures, shared with the resume contract tests


async def read_messages(
    stream: object, count: int
) -> tuple[list[message_pb2.AddressedMessage], list[q.SubscribeResponse]]:
    """`count` messages, and the responses that carried them."""
    assert isinstance(stream, grpc.aio.UnaryStreamCall)
    messages: list[message_pb2.AddressedMessage] = []
    responses: list[q.SubscribeResponse] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            response = await stream.read()
            assert isinstance(response, q.SubscribeResponse)
            responses.append(response)
            messages.extend(delivered(response))
    return messages, responses


async def test_live_messages_ready_together_come_in_batches_of_at_most_max_batch(
    served: tuple[QueueService, Stub],
) -> None:
    service, stub = served
    stream = stub.Subscribe(q.SubscribeRequest(bot_id=BOT, max_batch=50))
    await subscribers_reach(service, 1)
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"m{i}") for i in range(120)]))
    messages, responses = await read_messages(stream, 120)
    assert [m.sequence for m in messages] == list(range(1, 121))
    assert [m.message.content for m in messages] == [f"m{i}" for i in range(120)]
    assert all(not r.HasField("message") and 1 <= len(r.messages) <= 50 for r in responses)
    # One write published all 120 at once: the stream never sends them one by one.
    assert len(responses) < 120
    stream.cancel()


async def test_a_batched_replay_is_cut_at_max_batch_then_continues_live(
    served: tuple[QueueService, Stub],
) -> None:
    _, stub = served
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"m{i}") for i in range(120)]))
    resumed = stub.Subscribe(
        q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT, after_sequence=10)], max_batch=50)
    )
    messages, responses = await read_messages(resumed, 110)
    assert [len(r.messages) for r in responses] == [50, 50, 10]
    assert [m.sequence for m in messages] == list(range(11, 121))
    await stub.AddMessage(add("live"))
    (live,), _ = await read_messages(resumed, 1)
    assert (live.message.content, live.sequence) == ("live", 121)
    resumed.cancel()


@pytest.mark.parametrize("max_batch", [0, 1])
async def test_without_max_batch_each_response_carries_one_message(
    served: tuple[QueueService, Stub], max_batch: int
) -> None:
    service, stub = served
    stream = stub.Subscribe(q.SubscribeRequest(bot_id=BOT, max_batch=max_batch))
    await subscribers_reach(service, 1)
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"m{i}") for i in range(5)]))
    _, responses = await read_messages(stream, 5)
    assert [(r.message.sequence, len(r.messages)) for r in responses] == [
        (i, 0) for i in range(1, 6)
    ]
    stream.cancel()


async def test_no_gap_and_no_repeat_when_a_batched_stream_resumes_under_writes(
    served: tuple[QueueService, Stub],
) -> None:
    _, stub = served
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"old{i}") for i in range(300)]))
    stop, writing = asyncio.Event(), asyncio.Event()

    async def write() -> int:
        batches = 0
        while not stop.is_set():
            batch = [add(f"new{batches}-{i}") for i in range(20)]
            await stub.AddMessages(q.AddMessagesRequest(messages=batch))
            batches += 1
            writing.set()
        return batches * 20

    writer = asyncio.create_task(write())
    await writing.wait()
    resumed = stub.Subscribe(q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT)], max_batch=64))
    first, _ = await read_messages(resumed, 400)
    stop.set()
    written = await writer
    rest, _ = await read_messages(resumed, 300 + written - len(first))
    assert [m.sequence for m in first + rest] == list(range(1, 300 + written + 1))
    resumed.cancel()


async def test_a_max_batch_over_the_limit_is_refused(served: tuple[QueueService, Stub]) -> None:
    _, stub = served
    stream = stub.Subscribe(q.SubscribeRequest(max_batch=1001))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch: at most 1000" in (caught.value.details() or "")


async def test_a_batch_larger_than_a_grpc_message_is_split_across_responses(
    served: tuple[QueueService, Stub],
) -> None:
    # A text keeps up to 8,000 characters, 32,000 bytes when they are emoji: 150 of them
    # are 4.8 MB, more than a gRPC client takes in one message (4 MiB). The replay must
    # still reach the consumer, in order.
    _, stub = served
    big = "\N{GRINNING FACE}" * 7998
    count = 150
    for start in range(0, count, 50):
        requests = []
        for n in range(start, start + 50):
            request = add(f"{n:03d}{big}", pid=f"WA-BIG-{n}")
            request.correspondent_id = f"c{n}"
            requests.append(request)
        await stub.AddMessages(q.AddMessagesRequest(messages=requests))
    replay = stub.Subscribe(
        q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT, after_sequence=0)], max_batch=500)
    )
    messages, responses = await read_messages(replay, count)
    assert [m.message.content[:3] for m in messages] == [f"{n:03d}" for n in range(count)]
    assert len(responses) > 1
    assert all(r.ByteSize() < 4 * 1024 * 1024 for r in responses)
    replay.cancel()
