"""Merging a phone JID's queue into its LID's (one person, one correspondent): the
window, the character total, ids, placeholders and the persistence backlog."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.store import IdentityPair
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.correspondent_queue import UpdateStatus
from services.queue_svc.identity import moved_entry, pairs_in, readdress
from services.queue_svc.messages import Identity, QueueLimits
from tests.unit.queue_svc.helpers import IMAGE, FakeClock, text

PAIR = IdentityPair("777@lid", "4915100000007@s.whatsapp.net")
LID, PHONE = PAIR.lid, PAIR.phone_jid

step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from([LID, PHONE]), st.text("abc", max_size=12)),
    st.tuples(st.just("inject"), st.sampled_from([LID, PHONE]), st.text("abc", max_size=12)),
    st.tuples(st.just("pop"), st.integers(0, 3), st.just("")),
    st.tuples(st.just("tick"), st.integers(0, 30), st.just("")),
)


def _merge(bot: BotQueues) -> None:
    bot.identities.add(PAIR)
    bot.merge(PHONE, LID, partial(moved_entry, bot.identities, LID))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, max_size=40),
    max_messages=st.integers(1, 8),
    max_characters=st.integers(10, 80),
)
def test_a_merge_keeps_every_message_total_and_placeholder(
    steps: list[tuple[str, object, str]], max_messages: int, max_characters: int
) -> None:
    limits = QueueLimits(max_messages, max_characters, 100, 20)
    clock = FakeClock()
    bot = BotQueues("bot", "p", limits, clock=clock)
    media = 0
    persisted: list[str] = []
    for kind, arg, content in steps:
        if kind == "add":
            bot.add(str(arg), text(content or "x"))
        elif kind == "inject":
            media += 1
            bot.inject_placeholder(str(arg), text(content), IMAGE, f"m{media}")
        elif kind == "pop":
            persisted += [r.correspondent_id for r in bot.pop_ready(int(str(arg)))]
        else:
            clock.now += int(str(arg))
    pending = bot.backlog_size
    peeked = bot.pop_ready(pending)
    bot.restore_ready(peeked)
    backlog_before = [(r.correspondent_id, r.message.id, r.message.content) for r in peeked]
    lid_queue, phone_queue = bot.existing_queue(LID), bot.existing_queue(PHONE)
    placeholders = {
        p.media_processing_id
        for q in (lid_queue, phone_queue)
        if q is not None
        for p in q.placeholders()
        if p.media_processing_id is not None
    }
    highest = max((q.next_id for q in (lid_queue, phone_queue) if q is not None), default=1)
    lid_ids_before = {e.id for e in lid_queue.window()} if lid_queue is not None else set()
    counted_before = sum(q.counted_count for q in (lid_queue, phone_queue) if q is not None)
    characters_before = sum(q.total_characters for q in (lid_queue, phone_queue) if q is not None)

    bot.identities.add(PAIR)
    outcome = bot.merge(PHONE, LID, partial(moved_entry, bot.identities, LID))

    assert bot.existing_queue(PHONE) is None
    merged = bot.queue(LID)
    counted = merged.counted()
    # The character total is the sum over the counted entries, within the limits.
    assert merged.total_characters == sum(e.message_size for e in counted)
    assert len(counted) <= max_messages and merged.total_characters <= max_characters
    # Only the limits took anything out of the window, and only counted messages.
    assert len(counted) + outcome.evicted == counted_before
    assert (outcome.evicted == 0) == (merged.total_characters == characters_before)
    # The oldest first in eviction order (the age check reads only the head).
    assert [e.ready_at for e in counted] == sorted(e.ready_at for e in counted)
    # Ids are unique, below next_id; the LID's own entries kept theirs; moved ones
    # come after both queues' ids.
    ids = [e.id for e in merged.window()]
    assert len(ids) == len(set(ids)) and all(i < merged.next_id for i in ids)
    assert all(i >= highest for i in set(ids) - lid_ids_before)
    # Every placeholder is still there, and still found by its media id.
    assert {p.media_processing_id for p in merged.placeholders()} == placeholders
    for media_id in placeholders:
        assert bot.find_media(media_id) is not None
    # Nothing waiting to be persisted is lost; all of it is the LID's now, in order.
    assert bot.backlog_size == pending
    after = bot.pop_ready(pending)
    assert [r.message.content for r in after] == [c for _, _, c in backlog_before]
    assert all(r.correspondent_id == LID for r in after)
    # The LID's own keep their ids; the moved ones keep their order among themselves.
    for (was, old_id, _), ready in zip(backlog_before, after, strict=True):
        if was == LID:
            assert ready.message.id == old_id
    pairs = zip(backlog_before, after, strict=True)
    moved = [(old, r.message.id) for (was, old, _), r in pairs if was == PHONE]
    assert [new for _, new in sorted(moved)] == sorted(new for _, new in moved)


def test_a_pending_placeholder_under_the_phone_id_resolves_after_the_merge() -> None:
    bot = BotQueues("bot", "p", QueueLimits())
    bot.add(LID, text("by lid"))  # id 1 of the LID
    bot.add(PHONE, text("by phone 1"))  # ids 1..2 of the phone JID
    placeholder, _ = bot.inject_placeholder(PHONE, text("caption"), IMAGE, "m1")
    assert placeholder.id == 2
    waiting = bot.pop_ready(1)  # the LID's message is being persisted
    _merge(bot)
    # Found under the LID, by the media id; renumbered after both queues' ids.
    assert bot.find_media("m1") == (LID, 4)
    outcome = bot.resolve(LID, "m1", "a photo of a cat")
    assert outcome.status is UpdateStatus.UPDATED and outcome.message_id == 4
    ready = bot.pop_ready(10)
    assert [(r.correspondent_id, r.message.id, r.message.content) for r in ready] == [
        (LID, 3, "by phone 1"),
        (LID, 4, "a photo of a cat"),
    ]
    assert [r.correspondent_id for r in waiting] == [LID]
    assert bot.queue(LID).next_id == 5


def test_a_merge_of_an_id_with_only_persisted_history_continues_above_it() -> None:
    bot = BotQueues("bot", "p", QueueLimits())
    bot.seed_next_ids({PHONE: 41, LID: 3})
    assert bot.has_history(PHONE) and not bot.has_history("nobody@s.whatsapp.net")
    bot.identities.add(PAIR)
    outcome = bot.merge(PHONE, LID, partial(moved_entry, bot.identities, LID))
    assert outcome.had_history and outcome.moved == {}
    assert bot.queue(LID).next_id == 42
    # Idempotent: nothing is left to move, and no history is left under the phone id.
    again = bot.merge(PHONE, LID, partial(moved_entry, bot.identities, LID))
    assert not again.had_history and bot.queue(LID).next_id == 42


def test_moved_messages_are_readdressed_and_their_writers_follow_them() -> None:
    bot = BotQueues("bot", "p", QueueLimits())
    added = bot.add(PHONE, text("hi", pid="WA-1", sender=PHONE))
    assert added.entry is not None
    bot.identities.add(PAIR)
    outcome = bot.merge(PHONE, LID, partial(moved_entry, bot.identities, LID))
    # After both queues' ids: the phone JID's next id was 2.
    assert outcome.moved == {MessageKey(PHONE, 1): MessageKey(LID, 2)}
    assert bot.lookup_provider_id("WA-1") == (True, MessageKey(LID, 2))
    (ready,) = bot.pop_ready(5)
    assert ready.message.sender == LID
    assert json.loads(ready.message.details or "{}")["context"] == {
        "correspondentIdKind": "ID_KIND_LID",
        "correspondentPhone": PAIR.phone,
        "senderIdKind": "ID_KIND_LID",
        "senderPhone": PAIR.phone,
    }
    # The entry the first writer holds is unchanged (subscribers may hold it too).
    assert added.entry.sender == PHONE and added.entry.details is None


def test_pairs_come_from_the_chat_and_from_a_group_sender() -> None:
    direct = replace(text(sender=LID), identity=Identity("ID_KIND_LID", PAIR.phone))
    assert pairs_in(LID, direct) == [PAIR]
    group = replace(
        text(sender="888@lid"), identity=Identity("ID_KIND_GROUP", None, "ID_KIND_LID", "4917")
    )
    assert pairs_in("1203@g.us", group) == [IdentityPair("888@lid", "4917@s.whatsapp.net")]
    # A phone that is not digits, or a chat by phone JID, teaches nothing.
    odd = replace(group, identity=Identity("ID_KIND_LID", "+49 17"))
    assert pairs_in(LID, odd) == []
    assert pairs_in(PHONE, direct) == []


def test_readdress_moves_a_phone_message_to_the_lid_and_leaves_the_unknown_alone() -> None:
    bot = BotQueues("bot", "p", QueueLimits())
    message = text("hi", sender=PHONE)
    assert readdress(bot.identities, PHONE, message) == (PHONE, message)
    bot.identities.add(PAIR)
    correspondent_id, moved = readdress(bot.identities, PHONE, message)
    assert correspondent_id == LID and moved.sender == LID
    assert moved.identity == Identity("ID_KIND_LID", PAIR.phone, "ID_KIND_LID", PAIR.phone)
    # A bot's own message is addressed to the person but gets no context.
    reply = replace(text("answer", sender="bot@s.whatsapp.net"), source="bot")
    assert readdress(bot.identities, PHONE, reply) == (LID, reply)


def test_known_pairs_with_nothing_in_memory_create_no_queue() -> None:
    bot = BotQueues("bot", "p", QueueLimits())
    bot.seed_next_ids({PHONE: 9})
    other = IdentityPair("778@lid", "4915100000008@s.whatsapp.net")
    for pair in (PAIR, other):
        bot.identities.add(pair)
        bot.merge(pair.phone_jid, pair.lid, partial(moved_entry, bot.identities, pair.lid))
    assert list(bot.queues()) == []
    # The LID's first id still continues above the phone JID's persisted ones.
    assert bot.queue(LID).next_id == 10 and bot.queue(other.lid).next_id == 1
