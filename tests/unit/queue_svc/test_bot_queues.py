"""BotQueues: PopReady, the persistence backlog, dedup (review 1 §6.4 (1))."""

from __future__ import annotations

from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.correspondent_queue import UpdateStatus
from services.queue_svc.messages import QueueLimits
from tests.unit.queue_svc.helpers import IMAGE, FakeClock, media_id, text


def make(**limits: int) -> BotQueues:
    return BotQueues("bot", "whatsapp_baileys", QueueLimits(**limits), clock=FakeClock())


def test_pop_ready_skips_a_placeholder_and_returns_the_next_ready_message() -> None:
    bot = make()
    bot.inject_placeholder("c1", text("caption"), IMAGE, media_id())
    added = bot.add("c1", text("after the image"))
    popped = bot.pop_ready(10)
    assert [r.message for r in popped] == [added.entry]
    assert all(not r.message.is_placeholder for r in popped)
    assert bot.pop_ready(10) == []


def test_resolved_placeholder_enters_the_backlog_once() -> None:
    bot = make()
    mid = media_id()
    bot.inject_placeholder("c1", text(""), IMAGE, mid)
    assert bot.backlog_size == 0
    assert bot.resolve("c1", mid, "transcript").status is UpdateStatus.UPDATED
    assert bot.resolve("c1", mid, "transcript").entry is None
    popped = bot.pop_ready(10)
    assert [(r.correspondent_id, r.message.content) for r in popped] == [("c1", "transcript")]


def test_eviction_never_drops_from_the_persistence_backlog() -> None:
    bot = make(max_messages=1)
    entries = [bot.add("c1", text(str(i))).entry for i in range(5)]
    assert bot.queue("c1").counted_count == 1
    popped = bot.pop_ready(100)
    assert [r.message for r in popped] == entries


def test_pop_ready_respects_the_limit_and_restore_puts_back_in_order() -> None:
    bot = make()
    for i in range(5):
        bot.add(f"c{i % 2}", text(str(i)))
    first = bot.pop_ready(3)
    bot.restore_ready(first)
    again = bot.pop_ready(10)
    assert [r.message.content for r in again] == ["0", "1", "2", "3", "4"]


def test_duplicate_provider_message_id_is_accepted_once() -> None:
    bot = make()
    first = bot.add("c1", text("hi", pid="WA1"))
    second = bot.add("c1", text("hi", pid="WA1"))
    assert first.entry is not None and not first.duplicate
    assert second.duplicate and second.entry is None
    assert second.duplicate_of == MessageKey("c1", first.entry.id)
    assert bot.queue("c1").counted_count == 1 and bot.backlog_size == 1


def test_messages_without_provider_id_are_never_deduplicated() -> None:
    bot = make()
    assert not bot.add("c1", text("a")).duplicate
    assert not bot.add("c1", text("a")).duplicate
    assert bot.backlog_size == 2


def test_placeholder_provider_id_is_a_duplicate_for_add_message() -> None:
    bot = make()
    entry, _ = bot.inject_placeholder("c1", text("", pid="WA9"), IMAGE, media_id())
    outcome = bot.add("c1", text("resent as text?", pid="WA9"))
    assert outcome.duplicate and outcome.duplicate_of == MessageKey("c1", entry.id)


def test_provider_ids_reported_by_the_store_are_remembered() -> None:
    bot = make()
    bot.remember_persisted(["WA5"])
    outcome = bot.add("c1", text("x", pid="WA5"))
    assert outcome.duplicate and outcome.duplicate_of is None


def test_memory_of_durable_ids_is_bounded() -> None:
    bot = BotQueues("bot", "p", QueueLimits(), dedup_capacity=2, clock=FakeClock())
    for pid in ("a", "b", "c"):
        bot.add("c1", text(pid, pid=pid))
    bot.mark_durable(bot.pop_ready(10))
    # The oldest durable id is forgotten (the store answers for it); the newest are known.
    assert bot.lookup_provider_id("a") == (False, None)
    assert bot.lookup_provider_id("b") == (True, None)
    assert bot.lookup_provider_id("c") == (True, None)


def test_ids_not_yet_durable_are_never_forgotten() -> None:
    bot = BotQueues("bot", "p", QueueLimits(max_messages=1), dedup_capacity=1, clock=FakeClock())
    keys = {}
    for pid in ("a", "b", "c", "d"):
        outcome = bot.add("c1", text(pid, pid=pid))
        assert outcome.entry is not None
        keys[pid] = MessageKey("c1", outcome.entry.id)
    # Evicted from the window and far beyond the capacity, but not written yet: a resend
    # must still be recognised, with the key its acknowledgement waits on.
    for pid, key in keys.items():
        assert bot.lookup_provider_id(pid) == (True, key)
    taken = bot.pop_ready(2)
    bot.restore_ready(taken)  # a failed write: still pending
    assert bot.lookup_provider_id("a") == (True, keys["a"])
    bot.mark_durable(bot.pop_ready(10))
    assert bot.lookup_provider_id("a") == (False, None)
    assert bot.lookup_provider_id("d") == (True, None)


def test_find_media_knows_live_and_resolved_placeholders() -> None:
    bot = make()
    mid = media_id()
    entry, _ = bot.inject_placeholder("c1", text(""), IMAGE, mid)
    assert bot.find_media(mid) == ("c1", entry.id)
    bot.resolve("c1", mid, "done")
    assert bot.find_media(mid) == ("c1", entry.id)
    assert bot.find_media(media_id()) is None


def test_seeded_next_ids_apply_per_correspondent() -> None:
    bot = make()
    bot.seed_next_ids({"c1": 40})
    e1 = bot.add("c1", text()).entry
    e2 = bot.add("c2", text()).entry
    assert e1 is not None and e2 is not None
    assert (e1.id, e2.id) == (41, 1)


def test_resolve_in_unknown_correspondent_is_not_found() -> None:
    bot = make()
    assert bot.resolve("nobody", media_id(), "x").status is UpdateStatus.NOT_FOUND
