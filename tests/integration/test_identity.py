"""One person, one correspondent: queue_svc as a real process on a real SQLite store,
with a person writing by phone JID and by LID, mappings learned late, a restart between."""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.store import StoreConfig, open_store
from tests.helpers.processes import Subscriber, placeholder, queue_env, start_service

if TYPE_CHECKING:
    Stub = q_grpc.QueueServiceAsyncStub

BOT = "bot-id"
PROVIDER = "whatsapp_baileys"
LID = "123456789012345@lid"
DIGITS = "4915100000042"
PHONE = f"{DIGITS}@s.whatsapp.net"
EVENT = f"identity-change:{PHONE}>{LID}"


def new_message(
    pid: str, sender: str, *, kind: int | None = None, phone: str | None = None
) -> q.NewMessage:
    message = q.NewMessage(
        content=f"text {pid}", sender=sender, source=m.MESSAGE_SOURCE_USER, provider_message_id=pid
    )
    message.originating_time.GetCurrentTime()
    if kind is not None:
        message.context.correspondent_id_kind = kind  # type: ignore[assignment]
        message.context.sender_id_kind = kind  # type: ignore[assignment]
        message.context.chat_kind = c.CHAT_KIND_DIRECT
        if phone is not None:
            message.context.correspondent_phone = phone
    return message


def by_phone(pid: str) -> q.AddMessageRequest:
    """Addressed as a phone-first key gives it: the phone JID, no LID."""
    return q.AddMessageRequest(
        bot_id=BOT, correspondent_id=PHONE, message=new_message(pid, PHONE, kind=c.ID_KIND_PHONE)
    )


def by_lid(pid: str, *, with_phone: bool) -> q.AddMessageRequest:
    """Addressed by LID, with the phone number when the key carried it."""
    message = new_message(pid, LID, kind=c.ID_KIND_LID, phone=DIGITS if with_phone else None)
    return q.AddMessageRequest(bot_id=BOT, correspondent_id=LID, message=message)


@dataclass
class Running:
    stub: Stub
    # Subscribed to the bot before anything is sent.
    subscriber: Subscriber


@asynccontextmanager
async def queue_svc(tmp_path: Path, db: Path) -> AsyncIterator[Running]:
    service = await start_service(
        "services.queue_svc", queue_env(db), tmp_path / f"queue-{uuid.uuid4().hex[:6]}.log"
    )
    subscriber = Subscriber(service.address, BOT)
    try:
        await subscriber.start()
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield Running(q_grpc.QueueServiceStub(channel), subscriber)
    finally:
        await subscriber.close()
        assert await service.stop() == 0


async def persisted(db: Path) -> list[tuple[str, str, int]]:
    """(correspondent, provider id, id) of every message in `queues`, in sequence order."""
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        rows = await store.messages_after(BOT, 0, 1000)
        return [(r.correspondent_id, r.provider_message_id, r.id) for r in rows]
    finally:
        await store.close()


def events(subscriber: Subscriber) -> list[m.AddressedMessage]:
    return [a for a in subscriber.messages if a.message.details.HasField("identity_change")]


async def test_one_person_by_phone_and_by_lid_is_one_correspondent_across_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.sqlite3"
    async with queue_svc(tmp_path, db) as running:
        stub, subscriber = running.stub, running.subscriber
        assert (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
        # Before any mapping: the phone JID is all there is.
        await stub.AddMessage(by_phone("P1"))
        await stub.AddMessage(by_phone("P2"))
        # The LID arrives with the phone number: the person's id from now on.
        await stub.AddMessage(by_lid("L1", with_phone=True))
        await stub.AddMessage(by_phone("P3"))
        await stub.AddMessage(by_lid("L2", with_phone=False))
        await subscriber.wait_for(6, within=10)
        seen = [(a.correspondent_id, a.message.provider_message_id) for a in subscriber.messages]
        assert seen == [
            (PHONE, "P1"),
            (PHONE, "P2"),
            (LID, EVENT),
            (LID, "L1"),
            (LID, "P3"),
            (LID, "L2"),
        ]
        (event,) = events(subscriber)
        change = event.message.details.identity_change
        assert (change.previous_correspondent_id, change.correspondent_id, change.phone) == (
            PHONE,
            LID,
            DIGITS,
        )
        assert event.message.source == m.MESSAGE_SOURCE_SYSTEM
        assert event.message.content == f"[Identity] {PHONE} is now {LID} (+{DIGITS})"
        # Once the pair is known, every message of the person carries the phone number.
        for a in subscriber.messages[3:]:
            context = a.message.context
            assert context.correspondent_phone == DIGITS, a.message.provider_message_id
            assert context.correspondent_id_kind == c.ID_KIND_LID
            assert a.message.sender == LID
        lid_ids = [a.message.id for a in subscriber.messages if a.correspondent_id == LID]
        assert lid_ids == sorted(lid_ids) and len(set(lid_ids)) == len(lid_ids)
        # The LID's ids continue above the phone JID's (1 and 2): its window took the
        # phone JID's two messages in as 3 and 4 (in `queues` they stay 1 and 2).
        assert min(lid_ids) == 5
        # GetWindow by the old id reads the person's queue.
        window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id=PHONE))
        assert [(w.id, w.provider_message_id) for w in window.messages] == [
            (3, "P1"),
            (4, "P2"),
            (5, EVENT),
            (6, "L1"),
            (7, "P3"),
            (8, "L2"),
        ]

    # The mapping is in the store: after a restart a phone-JID message is the LID's, and
    # learning the pair again (a resent frame, another replica) sends no second event.
    async with queue_svc(tmp_path, db) as running:
        stub, subscriber = running.stub, running.subscriber
        await stub.AddMessage(by_phone("P4"))
        again = await stub.LearnIdentities(
            q.LearnIdentitiesRequest(bot_id=BOT, pairs=[q.IdentityPair(lid=LID, phone_jid=PHONE)])
        )
        assert (again.learned, again.merged) == (0, 0)
        await stub.AddMessage(by_lid("L3", with_phone=True))
        await subscriber.wait_for(2, within=10)
        seen = [(a.correspondent_id, a.message.provider_message_id) for a in subscriber.messages]
        assert seen == [(LID, "P4"), (LID, "L3")]
        assert subscriber.messages[0].message.context.correspondent_phone == DIGITS
    rows = await persisted(db)
    assert Counter(pid for _, pid, _ in rows) == Counter(
        ["P1", "P2", EVENT, "L1", "P3", "L2", "P4", "L3"]
    )
    assert [(who, pid) for who, pid, _ in rows if who == PHONE] == [(PHONE, "P1"), (PHONE, "P2")]


@pytest.mark.parametrize("learned_by", ["LearnIdentities", "a message carrying both"])
async def test_a_late_mapping_merges_two_queues_with_one_event_and_nothing_lost(
    tmp_path: Path, learned_by: str
) -> None:
    db = tmp_path / "store.sqlite3"
    media_id = str(uuid.uuid4())
    async with queue_svc(tmp_path, db) as running:
        stub, subscriber = running.stub, running.subscriber
        assert (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
        # Two queues of one person: by phone JID and by LID (no phone number known).
        await stub.AddMessage(by_phone("P1"))
        await stub.AddMessage(by_lid("L1", with_phone=False))
        await stub.AddMessage(by_phone("P2"))
        await stub.AddMessage(by_lid("L2", with_phone=False))
        # A photo by phone JID still being processed.
        injected = await stub.InjectPlaceholder(
            placeholder(
                BOT,
                PHONE,
                caption="look",
                media_processing_id=media_id,
                provider_message_id="P-photo",
            )
        )
        assert injected.id == 3
        await subscriber.wait_for(4, within=10)
        if learned_by == "LearnIdentities":
            pair = q.IdentityPair(lid=LID, phone_jid=PHONE)
            reply = await stub.LearnIdentities(
                q.LearnIdentitiesRequest(bot_id=BOT, pairs=[pair, pair])
            )
            assert (reply.learned, reply.merged) == (1, 1)
        else:
            await stub.AddMessage(by_lid("L3", with_phone=True))
        # Learned again, by both ways: nothing changes.
        await stub.AddMessage(by_lid("L4", with_phone=True))
        await stub.LearnIdentities(
            q.LearnIdentitiesRequest(bot_id=BOT, pairs=[q.IdentityPair(lid=LID, phone_jid=PHONE)])
        )
        # The media worker answers by the id it was given: the phone JID.
        updated = await stub.UpdateByMediaId(
            q.UpdateByMediaIdRequest(
                bot_id=BOT,
                correspondent_id=PHONE,
                media_processing_id=media_id,
                content="[Image] a cat",
            )
        )
        assert updated.status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
        expected = ["P1", "L1", "P2", "L2", EVENT, "L4", "P-photo"]
        if learned_by != "LearnIdentities":
            expected.insert(5, "L3")
        await subscriber.wait_for(len(expected), within=10)
        got = [a.message.provider_message_id for a in subscriber.messages]
        assert sorted(got) == sorted(expected) and len(got) == len(expected)
        assert len(events(subscriber)) == 1
        photo = next(a for a in subscriber.messages if a.message.provider_message_id == "P-photo")
        assert photo.correspondent_id == LID
        assert photo.message.content == "[Image] a cat"
        assert photo.message.context.correspondent_phone == DIGITS
        # After the event everything is the LID's, above both queues' ids (the photo
        # kept its place among them: renumbered at the merge, emitted when resolved),
        # texts in order.
        after = subscriber.messages[got.index(EVENT) :]
        assert all(a.correspondent_id == LID for a in after)
        assert min(a.message.id for a in after) > 3
        texts = [a.message.id for a in after if not a.message.media_kind]
        assert texts == sorted(texts)
        window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id=LID))
        assert Counter(w.provider_message_id for w in window.messages) == Counter(expected)
    rows = await persisted(db)
    assert Counter(pid for _, pid, _ in rows) == Counter(expected)


async def test_pairs_learned_while_stopped_are_merged_at_start_once_even_after_a_crash(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.sqlite3"
    media_id = str(uuid.uuid4())
    async with queue_svc(tmp_path, db) as running:
        stub = running.stub
        assert (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
        await stub.AddMessage(by_phone("P1"))
        await stub.AddMessage(by_lid("L1", with_phone=False))
        await stub.InjectPlaceholder(
            placeholder(BOT, PHONE, media_processing_id=media_id, provider_message_id="P-photo")
        )
        assert (await stub.StopBot(q.StopBotRequest(bot_id=BOT))).stopped
        # Node's lid-mapping store reports the pair while the bot is stopped: recorded only.
        reply = await stub.LearnIdentities(
            q.LearnIdentitiesRequest(bot_id=BOT, pairs=[q.IdentityPair(lid=LID, phone_jid=PHONE)])
        )
        assert (reply.learned, reply.merged) == (1, 0)
        started = await stub.StartBot(q.StartBotRequest(bot_id=BOT))
        # The job recorded under the phone JID is re-injected into the LID's queue.
        assert started.placeholders_restored == 1
        window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id=LID))
        assert [w.provider_message_id for w in window.messages] == ["L1", "P-photo", EVENT]
    # A crash after the event was persisted but before the pair was settled: the next
    # start finishes the pair again, and the event's provider id keeps it to one.
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE identities SET settled = 0").rowcount == 1
    async with queue_svc(tmp_path, db) as running:
        stub, subscriber = running.stub, running.subscriber
        updated = await stub.UpdateByMediaId(
            q.UpdateByMediaIdRequest(
                bot_id=BOT,
                correspondent_id=PHONE,
                media_processing_id=media_id,
                content="[Image] a dog",
            )
        )
        assert updated.status == q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED
        await subscriber.wait_for(1, within=10)
        (photo,) = subscriber.messages
        assert (photo.correspondent_id, photo.message.content) == (LID, "[Image] a dog")
        assert photo.message.context.correspondent_phone == DIGITS
        assert events(subscriber) == []
    rows = await persisted(db)
    assert Counter(pid for _, pid, _ in rows) == Counter(["P1", "L1", EVENT, "P-photo"])
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        assert [k.settled for k in await store.identities(BOT)] == [True]
    finally:
        await store.close()
