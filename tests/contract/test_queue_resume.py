"""Resumable Subscribe (cursors, named consumers, CommitCursor) through a real channel,
against the real servicer and service on the real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.store import Store
from services.queue_svc.service import QueueService, ServiceSettings
from tests.contract.test_queue_service import add, code_of, serve, store, subscribers_reach

if TYPE_CHECKING:
    Stub = q_grpc.QueueServiceAsyncStub

BOT = "bot-c"
__all__ = ["store"]  # the fixture, shared with the QueueService contract tests


@pytest.fixture
async def served(store: Store) -> AsyncIterator[tuple[QueueService, Stub]]:
    service, serving = await serve(store, ServiceSettings(subscriber_buffer=10_000))
    async with serving as channel:
        client: Stub = q_grpc.QueueServiceStub(channel)
        for bot in (BOT, "other"):
            assert (await client.StartBot(q.StartBotRequest(bot_id=bot))).started
        yield service, client
    await service.shutdown()


async def read(stream: object, count: int) -> list[q.SubscribeResponse]:
    assert isinstance(stream, grpc.aio.UnaryStreamCall)
    found: list[q.SubscribeResponse] = []
    async with asyncio.timeout(10):
        while len(found) < count:
            response = await stream.read()
            assert isinstance(response, q.SubscribeResponse)
            found.append(response)
    return found


async def test_messages_carry_their_bots_sequence(served: tuple[QueueService, Stub]) -> None:
    service, stub = served
    live = stub.Subscribe(q.SubscribeRequest())
    await subscribers_reach(service, 1)
    await stub.AddMessages(
        q.AddMessagesRequest(messages=[add("a"), add("x", bot="other"), add("b")])
    )
    seen = await read(live, 3)
    # Ingestion writes bot by bot; each bot's sequence counts on its own.
    assert sorted(
        (s.message.bot_id, s.message.sequence, s.message.message.content) for s in seen
    ) == [
        (BOT, 1, "a"),
        (BOT, 2, "b"),
        ("other", 1, "x"),
    ]
    live.cancel()


async def test_a_cursor_replays_what_was_persisted_after_it_then_continues_live(
    served: tuple[QueueService, Stub],
) -> None:
    service, stub = served
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"m{i}") for i in range(1, 6)]))
    await stub.AddMessage(add("elsewhere", bot="other"))
    resumed = stub.Subscribe(
        q.SubscribeRequest(bot_id=BOT, cursors=[q.BotCursor(bot_id=BOT, after_sequence=2)])
    )
    replayed = await read(resumed, 3)
    assert [s.message.message.content for s in replayed] == ["m3", "m4", "m5"]
    assert [s.message.sequence for s in replayed] == [3, 4, 5]
    await stub.AddMessage(add("m6"))
    (live,) = await read(resumed, 1)
    assert (live.message.message.content, live.message.sequence) == ("m6", 6)
    # Without a cursor the stream stays live only, as before.
    plain = stub.Subscribe(q.SubscribeRequest(bot_id=BOT))
    await subscribers_reach(service, 2)
    await stub.AddMessage(add("m7"))
    (only,) = await read(plain, 1)
    assert only.message.sequence == 7
    resumed.cancel()
    plain.cancel()


async def test_no_gap_and_no_repeat_when_resuming_under_concurrent_writes(
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
    # Replay pages through the store while the writer keeps the live buffer filling.
    resumed = stub.Subscribe(q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT)]))
    first = await read(resumed, 400)
    stop.set()
    written = await writer
    rest = await read(resumed, 300 + written - 400)
    sequences = [s.message.sequence for s in first + rest]
    assert sequences == list(range(1, 300 + written + 1))
    resumed.cancel()


async def test_a_named_consumer_resumes_from_its_committed_cursor(
    served: tuple[QueueService, Stub],
) -> None:
    _, stub = served
    await stub.AddMessages(q.AddMessagesRequest(messages=[add(f"m{i}") for i in range(1, 5)]))
    await stub.AddMessages(q.AddMessagesRequest(messages=[add("o1", bot="other")]))
    commit = q.CommitCursorRequest(consumer_name="bot-logic", bot_id=BOT, sequence=3)
    assert (await stub.CommitCursor(commit)).advanced
    assert not (await stub.CommitCursor(commit)).advanced
    backwards = q.CommitCursorRequest(consumer_name="bot-logic", bot_id=BOT, sequence=1)
    assert not (await stub.CommitCursor(backwards)).advanced
    await stub.CommitCursor(q.CommitCursorRequest(consumer_name="bot-logic", bot_id="other"))
    stream = stub.Subscribe(q.SubscribeRequest(consumer_name="bot-logic"))
    seen = await read(stream, 2)
    assert sorted((s.message.bot_id, s.message.message.content) for s in seen) == [
        (BOT, "m4"),
        ("other", "o1"),
    ]
    stream.cancel()
    # A cursor in the request wins over the stored one of the same bot.
    again = stub.Subscribe(
        q.SubscribeRequest(
            bot_id=BOT,
            consumer_name="bot-logic",
            cursors=[q.BotCursor(bot_id=BOT, after_sequence=1)],
        )
    )
    assert [s.message.sequence for s in await read(again, 3)] == [2, 3, 4]
    again.cancel()


@pytest.mark.parametrize(
    "request_",
    [
        q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT, after_sequence=-1)]),
        q.SubscribeRequest(cursors=[q.BotCursor(bot_id=BOT), q.BotCursor(bot_id=BOT)]),
        q.SubscribeRequest(cursors=[q.BotCursor()]),
        q.SubscribeRequest(consumer_name=""),
        q.SubscribeRequest(consumer_name="x" * 201),
    ],
)
async def test_bad_cursors_are_refused(
    served: tuple[QueueService, Stub], request_: q.SubscribeRequest
) -> None:
    _, stub = served
    stream = stub.Subscribe(request_)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_commits_are_refused_and_change_nothing(
    served: tuple[QueueService, Stub], store: Store
) -> None:
    _, stub = served
    for request in (
        q.CommitCursorRequest(consumer_name="c", bot_id=BOT, sequence=-1),
        q.CommitCursorRequest(bot_id=BOT, sequence=1),
        q.CommitCursorRequest(consumer_name="c", sequence=1),
    ):
        assert await code_of(stub.CommitCursor(request)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await store.delivery_cursors("c") == {}
