"""Every QueueService RPC through a real channel, against the real servicer and service
on the real SQLite store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from chatbot.common.v1 import context_pb2
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.job_cost import claim_delay_ms
from services.common.routing import default_definitions
from services.common.store import JobCollection, Store
from services.queue_svc.server import grpc_edge
from services.queue_svc.service import QueueService, ServiceSettings
from services.queue_svc.servicer import QueueServicer
from tests.helpers.grpc_harness import serve_on_loopback
from tests.unit.queue_svc.helpers import sqlite_store

BOT = "bot-c"
if TYPE_CHECKING:
    Stub = q_grpc.QueueServiceAsyncStub


def new_message(content: str = "hello", pid: str = "") -> q.NewMessage:
    message = q.NewMessage(
        content=content,
        sender="u@s.whatsapp.net",
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=pid,
    )
    message.originating_time.GetCurrentTime()
    return message


def add(content: str = "hello", pid: str = "", bot: str = BOT) -> q.AddMessageRequest:
    return q.AddMessageRequest(bot_id=bot, correspondent_id="c1", message=new_message(content, pid))


def inject(mid: str, pid: str = "WA-IMG", bot: str = BOT) -> q.InjectPlaceholderRequest:
    return q.InjectPlaceholderRequest(
        bot_id=bot,
        correspondent_id="c1",
        message=new_message("caption", pid),
        media_processing_id=mid,
        mime_type="audio/ogg; codecs=opus",
        media_kind=m.MEDIA_KIND_VOICE_NOTE,
        file_size=1234,
        condition=q.MEDIA_CONDITION_STAGED,
    )


async def serve(
    store: Store, settings: ServiceSettings, *, start: bool = True
) -> tuple[QueueService, AbstractAsyncContextManager[grpc.aio.Channel]]:
    service = QueueService(store, settings)
    if start:
        await service.start()

    def register(server: grpc.aio.Server) -> None:
        q_grpc.add_QueueServiceServicer_to_server(QueueServicer(service), server)

    return service, serve_on_loopback(register, interceptors=[grpc_edge(lambda *_: None)])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with sqlite_store(tmp_path) as s:
        yield s


@pytest.fixture
async def served(store: Store) -> AsyncIterator[tuple[QueueService, Stub]]:
    service, serving = await serve(store, ServiceSettings(subscriber_buffer=50))
    async with serving as channel:
        client: Stub = q_grpc.QueueServiceStub(channel)
        assert (await client.StartBot(q.StartBotRequest(bot_id=BOT))).started
        yield service, client
    await service.shutdown()


@pytest.fixture
def stub(served: tuple[QueueService, Stub]) -> Stub:
    return served[1]


async def subscribers_reach(service: QueueService, count: int) -> None:
    """Streams register when the server first runs them; wait for that, not a guess."""
    for _ in range(500):
        if service.subscriber_count >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {service.subscriber_count} subscribers registered")


async def code_of(call: object) -> grpc.StatusCode:
    assert asyncio.iscoroutine(call) or isinstance(call, grpc.aio.UnaryUnaryCall)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_add_message_assigns_ids_and_answers_duplicates(stub: Stub) -> None:
    assert (await stub.AddMessage(add("a", pid="WA1"))).id == 1
    again = await stub.AddMessage(add("a", pid="WA1"))
    assert again.duplicate and again.id == 0
    assert (await stub.AddMessage(add("b"))).id == 2


async def test_add_message_errors(stub: Stub) -> None:
    assert await code_of(stub.AddMessage(add("x", bot="stopped"))) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    bad = add("")
    assert await code_of(stub.AddMessage(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    no_sender = add("x")
    no_sender.message.sender = ""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddMessage(no_sender)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message.sender: required" in (caught.value.details() or "")
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert window.next_id == 1 and not window.messages  # nothing changed


async def test_add_messages_gives_one_result_per_item(stub: Stub) -> None:
    reply = await stub.AddMessages(
        q.AddMessagesRequest(
            messages=[add("a", pid="A"), add("a", pid="A"), add("z", bot="stopped"), add("b")]
        )
    )
    assert [(r.status, r.id) for r in reply.results] == [
        (q.ADD_STATUS_ADDED, 1),
        (q.ADD_STATUS_DUPLICATE, 0),
        (q.ADD_STATUS_BOT_NOT_ACTIVE, 0),
        (q.ADD_STATUS_ADDED, 2),
    ]


async def test_add_messages_invalid_batch_changes_nothing(stub: Stub) -> None:
    empty = stub.AddMessages(q.AddMessagesRequest())
    assert await code_of(empty) == grpc.StatusCode.INVALID_ARGUMENT
    one_bad = q.AddMessagesRequest(messages=[add("ok"), add("")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddMessages(one_bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[1].message.content" in (caught.value.details() or "")
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert window.next_id == 1


async def test_inject_placeholder_and_update_by_media_id(stub: Stub, store: Store) -> None:
    mid = str(uuid.uuid4())
    placed = await stub.InjectPlaceholder(inject(mid))
    assert (placed.id, placed.duplicate) == (1, False)
    repeat = await stub.InjectPlaceholder(inject(mid))
    assert (repeat.id, repeat.duplicate) == (1, True)
    found = await store.get_job(mid)
    assert found is not None and found[0] is JobCollection.ACTIVE
    assert found[1].pool == "Audio" and found[1].media_kind == "MEDIA_KIND_VOICE_NOTE"
    # Claimed in order of arrival + expected cost, estimated from the staged size.
    assert found[1].claim_delay_ms == claim_delay_ms(default_definitions().pool("Audio"), 1234)
    assert found[1].claim_delay_ms > 0

    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert [(w.id, w.media_processing_id, w.content) for w in window.messages] == [
        (1, mid, "caption")
    ]
    assert window.total_characters == 0 and window.next_id == 2

    update = q.UpdateByMediaIdRequest(
        bot_id=BOT, correspondent_id="c1", media_processing_id=mid, content="transcript"
    )
    first = await stub.UpdateByMediaId(update)
    assert (first.status, first.message_id) == (q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED, 1)
    second = await stub.UpdateByMediaId(update)
    assert second.status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
    unknown = q.UpdateByMediaIdRequest(
        bot_id=BOT, correspondent_id="c1", media_processing_id=str(uuid.uuid4())
    )
    assert (await stub.UpdateByMediaId(unknown)).status == q.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND
    unknown.bot_id = "stopped"
    assert (await stub.UpdateByMediaId(unknown)).status == (
        q.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE
    )
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert not window.messages[0].HasField("media_processing_id")
    assert window.total_characters == len("transcript")


async def test_inject_placeholder_keeps_nodes_condition_detail_with_the_job(
    stub: Stub, store: Store
) -> None:
    mid = str(uuid.uuid4())
    request = inject(mid, pid="WA-BROKEN")
    request.condition = q.MEDIA_CONDITION_CORRUPT
    request.condition_detail = "download failed: HTTP 410 after re-upload"
    await stub.InjectPlaceholder(request)
    found = await store.get_job(mid)
    assert found is not None and found[1].pool == "Corrupt"
    assert found[1].condition_detail == "download failed: HTTP 410 after re-upload"
    # The chat sees the placeholder only, never the reason.
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert all("410" not in w.content for w in window.messages)


async def test_inject_placeholder_errors(stub: Stub) -> None:
    bad_id = inject("not-a-uuid")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InjectPlaceholder(bad_id)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "media_processing_id: not a lower-case UUID4" in (caught.value.details() or "")
    no_pid = inject(str(uuid.uuid4()), pid="")
    assert await code_of(stub.InjectPlaceholder(no_pid)) == grpc.StatusCode.INVALID_ARGUMENT
    no_condition = inject(str(uuid.uuid4()))
    no_condition.condition = q.MEDIA_CONDITION_UNSPECIFIED
    assert await code_of(stub.InjectPlaceholder(no_condition)) == (grpc.StatusCode.INVALID_ARGUMENT)
    inactive = inject(str(uuid.uuid4()), bot="stopped")
    assert await code_of(stub.InjectPlaceholder(inactive)) == (grpc.StatusCode.FAILED_PRECONDITION)
    bad_update = q.UpdateByMediaIdRequest(bot_id=BOT, correspondent_id="c1")
    assert await code_of(stub.UpdateByMediaId(bad_update)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_inject_placeholders_gives_each_item_its_unary_outcome(
    stub: Stub, store: Store
) -> None:
    first, second, other = (str(uuid.uuid4()) for _ in range(3))
    no_pid = inject(str(uuid.uuid4()), pid="")
    reply = await stub.InjectPlaceholders(
        q.InjectPlaceholdersRequest(
            placeholders=[
                inject(first, pid="WA-1"),
                inject(first, pid="WA-1"),  # a resend in the same batch
                inject(other, pid="WA-2", bot="stopped"),
                no_pid,
                inject(second, pid="WA-3"),
            ]
        )
    )
    codes = [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION]
    codes += [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK]
    assert [r.code for r in reply.results] == [c.value[0] for c in codes]
    assert "provider_message_id: required for media" in reply.results[3].error
    assert "not active" in reply.results[2].error
    results = reply.results
    # The resend is a duplicate of whichever of the two ran first (as two concurrent
    # unary calls would be), and answers that one's id.
    assert sorted([results[0].response.duplicate, results[1].response.duplicate]) == [False, True]
    assert results[0].response.id == results[1].response.id == 1
    assert results[4].response.id > 1 and not results[4].response.duplicate
    for mid in (first, second):
        found = await store.get_job(mid)
        assert found is not None and found[0] is JobCollection.ACTIVE
    assert await store.get_job(other) is None
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert sorted(w.media_processing_id for w in window.messages) == sorted([first, second])


async def test_update_by_media_ids_gives_each_item_its_unary_outcome(stub: Stub) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await stub.InjectPlaceholder(inject(first, pid="WA-1"))
    await stub.InjectPlaceholder(inject(second, pid="WA-2"))

    def update(mid: str, content: str, bot: str = BOT) -> q.UpdateByMediaIdRequest:
        return q.UpdateByMediaIdRequest(
            bot_id=bot, correspondent_id="c1", media_processing_id=mid, content=content
        )

    reply = await stub.UpdateByMediaIds(
        q.UpdateByMediaIdsRequest(
            updates=[
                update(first, "one"),
                update(str(uuid.uuid4()), "nobody's"),
                update(first, "one again"),
                update(second, "two", bot="stopped"),
                update(second, "two"),
            ]
        )
    )
    assert all(r.code == grpc.StatusCode.OK.value[0] and not r.error for r in reply.results)
    assert [r.response.status for r in reply.results] == [
        q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED,
        q.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND,
        q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED,
        q.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE,
        q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED,
    ]
    assert reply.results[0].response.message_id == 1
    assert reply.results[4].response.message_id == 2
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert [(w.id, w.content) for w in window.messages] == [(1, "one"), (2, "two")]


async def test_update_by_media_ids_refuses_a_bad_item_alone(stub: Stub) -> None:
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    await stub.InjectPlaceholder(inject(good, pid="WA-1"))
    await stub.InjectPlaceholder(inject(bad, pid="WA-2"))
    refused = q.UpdateByMediaIdRequest(
        bot_id=BOT, correspondent_id="c1", media_processing_id=bad, content="bad"
    )
    refused.media_result.language = "not a language"
    reply = await stub.UpdateByMediaIds(
        q.UpdateByMediaIdsRequest(
            updates=[
                refused,
                q.UpdateByMediaIdRequest(
                    bot_id=BOT, correspondent_id="c1", media_processing_id=good, content="ok"
                ),
            ]
        )
    )
    assert reply.results[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "language" in reply.results[0].error
    assert reply.results[1].code == grpc.StatusCode.OK.value[0]
    assert reply.results[1].response.status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    # The refused item left its placeholder pending; the good one is resolved.
    contents = {w.provider_message_id: (w.content, w.media_processing_id) for w in window.messages}
    assert contents == {"WA-1": ("ok", ""), "WA-2": ("caption", bad)}


async def test_batched_media_calls_refuse_an_invalid_batch_whole(stub: Stub) -> None:
    assert await code_of(stub.InjectPlaceholders(q.InjectPlaceholdersRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    good = inject(str(uuid.uuid4()), pid="WA-OK")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.InjectPlaceholders(
            q.InjectPlaceholdersRequest(placeholders=[good, inject("not-a-uuid")])
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "placeholders[1].media_processing_id: not a lower-case UUID4" in (
        caught.value.details() or ""
    )
    too_many = q.InjectPlaceholdersRequest(placeholders=[good] * 1001)
    assert await code_of(stub.InjectPlaceholders(too_many)) == grpc.StatusCode.INVALID_ARGUMENT
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert not window.messages  # nothing changed
    assert await code_of(stub.UpdateByMediaIds(q.UpdateByMediaIdsRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    no_id = q.UpdateByMediaIdsRequest(
        updates=[q.UpdateByMediaIdRequest(bot_id=BOT, correspondent_id="c1")]
    )
    assert await code_of(stub.UpdateByMediaIds(no_id)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_start_and_stop_bot(stub: Stub, store: Store) -> None:
    assert not (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
    await stub.InjectPlaceholder(inject(str(uuid.uuid4())))
    stopped = await stub.StopBot(q.StopBotRequest(bot_id=BOT))
    assert stopped.stopped and stopped.jobs_parked == 1
    assert not (await stub.StopBot(q.StopBotRequest(bot_id=BOT))).stopped
    assert len(await store.list_jobs(BOT, JobCollection.HOLDING)) == 1
    started = await stub.StartBot(q.StartBotRequest(bot_id=BOT))
    assert started.started and started.jobs_reactivated == 1
    assert started.placeholders_restored == 1 and started.results_applied == 0
    assert await code_of(stub.StartBot(q.StartBotRequest())) == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_window_and_pop_ready_need_an_active_bot(stub: Stub) -> None:
    window = q.GetWindowRequest(bot_id="stopped", correspondent_id="c1")
    assert await code_of(stub.GetWindow(window)) == grpc.StatusCode.FAILED_PRECONDITION
    pop = q.PopReadyRequest(bot_id="stopped")
    assert await code_of(stub.PopReady(pop)) == grpc.StatusCode.FAILED_PRECONDITION
    # With ingestion running, everything acknowledged is already persisted.
    await stub.AddMessage(add("x"))
    assert not (await stub.PopReady(q.PopReadyRequest(bot_id=BOT))).messages


async def test_pop_ready_takes_the_backlog_skipping_placeholders(store: Store) -> None:
    # Ingestion not running: the backlog stays until PopReady takes (and persists) it.
    service, serving = await serve(store, ServiceSettings(), start=False)
    async with serving as channel:
        client: Stub = q_grpc.QueueServiceStub(channel)
        await client.StartBot(q.StartBotRequest(bot_id=BOT))
        await client.InjectPlaceholder(inject(str(uuid.uuid4())))
        writer = asyncio.ensure_future(client.AddMessage(add("ready one")))
        for _ in range(200):
            if any(b.backlog_size for _, b in service.bot_snapshots()):
                break
            await asyncio.sleep(0.01)
        popped = await client.PopReady(q.PopReadyRequest(bot_id=BOT, limit=10))
        assert [
            (p.bot_id, p.correspondent_id, p.message.id, p.message.content) for p in popped.messages
        ] == [(BOT, "c1", 2, "ready one")]
        assert popped.messages[0].provider_name == "whatsapp_baileys"
        assert (await writer).id == 2  # the writer is answered once the row is durable
        history = await store.message_history(BOT, "whatsapp_baileys", "c1")
        assert [h.id for h in history] == [2]
    await service.shutdown()


async def test_subscribe_streams_ready_messages_once_filtered_by_bot(
    served: tuple[QueueService, Stub],
) -> None:
    service, stub = served
    await stub.StartBot(q.StartBotRequest(bot_id="other"))
    everything = stub.Subscribe(q.SubscribeRequest())
    only_bot = stub.Subscribe(q.SubscribeRequest(bot_id=BOT))
    await subscribers_reach(service, 2)
    mid = str(uuid.uuid4())
    await stub.InjectPlaceholder(inject(mid))
    await stub.AddMessage(add("first"))
    other = add("elsewhere", bot="other")
    await stub.AddMessage(other)
    await stub.UpdateByMediaId(
        q.UpdateByMediaIdRequest(
            bot_id=BOT, correspondent_id="c1", media_processing_id=mid, content="voice text"
        )
    )
    await stub.UpdateByMediaId(
        q.UpdateByMediaIdRequest(
            bot_id=BOT, correspondent_id="c1", media_processing_id=mid, content="voice text"
        )
    )
    await stub.AddMessage(add("last"))
    seen_all = [await everything.read() for _ in range(4)]
    seen_bot = [await only_bot.read() for _ in range(3)]
    assert all(isinstance(s, q.SubscribeResponse) for s in seen_all + seen_bot)
    assert [s.message.message.content for s in seen_all] == [  # type: ignore[attr-defined]
        "first",
        "elsewhere",
        "voice text",
        "last",
    ]
    assert [s.message.message.content for s in seen_bot] == [  # type: ignore[attr-defined]
        "first",
        "voice text",
        "last",
    ]
    everything.cancel()
    only_bot.cancel()


async def test_subscriber_that_overflows_gets_resource_exhausted(store: Store) -> None:
    service, serving = await serve(store, ServiceSettings(subscriber_buffer=2))
    async with serving as channel:
        client: Stub = q_grpc.QueueServiceStub(channel)
        await client.StartBot(q.StartBotRequest(bot_id=BOT))
        stream = client.Subscribe(q.SubscribeRequest())
        await subscribers_reach(service, 1)
        batch = q.AddMessagesRequest(messages=[add(str(i)) for i in range(5)])
        await client.AddMessages(batch)  # never blocked by the slow subscriber
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "subscribe again" in (caught.value.details() or "")
    await service.shutdown()


async def test_typed_details_and_reply_context_survive_the_queue_and_a_restart(
    stub: Stub,
) -> None:
    request = add("[Poll] Lunch?\n1. Pizza\n2. Sushi", pid="WA-POLL")
    poll = request.message.details.poll
    poll.question = "Lunch?"
    poll.options.add(name="Pizza")
    poll.options.add(name="Sushi")
    request.message.reply_to.quoted_message_id = "WA-EARLIER"
    request.message.reply_to.snippet = "What do we eat?"
    assert (await stub.AddMessage(request)).id == 1
    await stub.AddMessage(add("plain", pid="WA-PLAIN"))

    def typed(window: q.GetWindowResponse) -> list[tuple[str, bool, bool]]:
        return [
            (x.provider_message_id, x.HasField("details"), x.HasField("reply_to"))
            for x in window.messages
        ]

    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert typed(window) == [("WA-POLL", True, True), ("WA-PLAIN", False, False)]
    assert window.messages[0].details == request.message.details
    assert window.messages[0].reply_to == request.message.reply_to

    # Persisted, then read back from `queues` when the bot starts again.
    await stub.StopBot(q.StopBotRequest(bot_id=BOT))
    await stub.StartBot(q.StartBotRequest(bot_id=BOT))
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert typed(window) == [("WA-POLL", True, True), ("WA-PLAIN", False, False)]
    assert window.messages[0].details == request.message.details
    assert window.messages[0].reply_to == request.message.reply_to


async def test_details_that_break_the_contract_are_refused(stub: Stub) -> None:
    request = add("[Edited message ?] x", pid="WA-EDIT")
    request.message.details.edit.text = "x"  # no target_message_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddMessage(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message.details.edit.target_message_id: required" in (caught.value.details() or "")
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert not window.messages


async def test_learn_identities_checks_pairs_and_records_them_for_a_stopped_bot(
    stub: Stub, store: Store
) -> None:
    lid, phone = "31337@lid", "4915100000031@s.whatsapp.net"
    bad = q.LearnIdentitiesRequest(
        bot_id="stopped",
        pairs=[
            q.IdentityPair(lid=lid, phone_jid=phone),
            q.IdentityPair(lid=phone, phone_jid=lid),
        ],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LearnIdentities(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pairs[1]: identity pair: lid must be <id>@lid" in (caught.value.details() or "")
    assert await store.identities("stopped") == []  # nothing recorded, not even pairs[0]
    missing = q.LearnIdentitiesRequest(bot_id="stopped", pairs=[q.IdentityPair(lid=lid)])
    assert await code_of(stub.LearnIdentities(missing)) == grpc.StatusCode.INVALID_ARGUMENT
    good = q.LearnIdentitiesRequest(
        bot_id="stopped", pairs=[q.IdentityPair(lid=lid, phone_jid=phone)]
    )
    reply = await stub.LearnIdentities(good)
    assert (reply.learned, reply.merged) == (1, 0)
    assert [(k.pair.lid, k.settled) for k in await store.identities("stopped")] == [(lid, False)]
    again = await stub.LearnIdentities(good)
    assert (again.learned, again.merged) == (0, 0)


async def test_context_survives_the_queue_and_a_restart(stub: Stub) -> None:
    request = add("hi", pid="WA-CTX")
    request.correspondent_id = "31337@lid"
    request.message.sender = "31337@lid"
    context = request.message.context
    context.correspondent_id_kind = context_pb2.ID_KIND_LID
    context.correspondent_phone = "4915100000031"
    context.mentions.add(jid="42@lid", is_bot=True)
    context.mentions_bot = True
    await stub.AddMessage(request)
    # Kept whole; the sender is the chat, so its phone number is the chat's.
    expected = context_pb2.MessageContext()
    expected.CopyFrom(context)
    expected.sender_id_kind = context_pb2.ID_KIND_LID
    expected.sender_phone = "4915100000031"
    window = q.GetWindowRequest(bot_id=BOT, correspondent_id="31337@lid")
    assert (await stub.GetWindow(window)).messages[0].context == expected
    await stub.StopBot(q.StopBotRequest(bot_id=BOT))
    await stub.StartBot(q.StartBotRequest(bot_id=BOT))
    # By the phone JID too: the pair the message gave is in the store.
    by_phone = q.GetWindowRequest(bot_id=BOT, correspondent_id="4915100000031@s.whatsapp.net")
    (message,) = (await stub.GetWindow(by_phone)).messages
    assert message.context == expected


async def test_a_placeholder_rebuilt_from_its_job_keeps_the_context(stub: Stub) -> None:
    mid = str(uuid.uuid4())
    request = inject(mid, pid="WA-CTX-IMG")
    request.message.context.chat_kind = context_pb2.CHAT_KIND_DIRECT
    request.message.context.forwarded = True
    request.message.context.view_once = True
    request.message.reply_to.quoted_message_id = "WA-EARLIER"
    await stub.InjectPlaceholder(request)
    await stub.StopBot(q.StopBotRequest(bot_id=BOT))
    # Rebuilt from the media job, not from memory.
    assert (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).placeholders_restored == 1
    window = q.GetWindowRequest(bot_id=BOT, correspondent_id="c1")
    (placeholder,) = (await stub.GetWindow(window)).messages
    assert placeholder.media_processing_id == mid
    assert placeholder.context == request.message.context
    updated = await stub.UpdateByMediaId(
        q.UpdateByMediaIdRequest(
            bot_id=BOT, correspondent_id="c1", media_processing_id=mid, content="[Voice] hi"
        )
    )
    assert updated.status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
    (resolved,) = (await stub.GetWindow(window)).messages
    assert resolved.context == request.message.context
    assert resolved.reply_to == request.message.reply_to


async def test_a_transcripts_language_becomes_a_typed_field_kept_through_a_restart(
    stub: Stub, store: Store
) -> None:
    mid = str(uuid.uuid4())
    request = inject(mid, pid="WA-VOICE")
    request.message.reply_to.quoted_message_id = "WA-EARLIER"
    await stub.InjectPlaceholder(request)
    update = q.UpdateByMediaIdRequest(
        bot_id=BOT,
        correspondent_id="c1",
        media_processing_id=mid,
        content="[Voice note, 0:04, Portuguese] Boa tarde",
    )
    bad = q.UpdateByMediaIdRequest()
    for language, probability in (("pt; DROP", 0.9), ("pt", 1.5), ("pt", float("nan"))):
        bad.CopyFrom(update)
        bad.media_result.language = language
        bad.media_result.language_probability = probability
        assert await code_of(stub.UpdateByMediaId(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert window.messages[0].media_processing_id == mid  # refused: still a placeholder

    update.media_result.language = "pt"
    update.media_result.language_probability = 0.81
    assert (await stub.UpdateByMediaId(update)).status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    [resolved] = window.messages
    assert resolved.media_result == update.media_result
    assert resolved.reply_to.quoted_message_id == "WA-EARLIER"  # the other fields stay

    assert await store.delete_job(mid)  # as media_svc does once UPDATED
    await stub.StopBot(q.StopBotRequest(bot_id=BOT))
    await stub.StartBot(q.StartBotRequest(bot_id=BOT))
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    assert [m.media_result for m in window.messages] == [update.media_result]
