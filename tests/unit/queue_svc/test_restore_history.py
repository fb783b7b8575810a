"""Windows refilled from `queues` at StartBot: limits, ids, dedup, eviction order."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.store import StoredMessage
from services.queue_svc.bot_queues import BotQueues
from services.queue_svc.messages import QueueLimits
from services.queue_svc.recovery import restore_history
from tests.unit.queue_svc.helpers import IMAGE, T0, FakeClock, media_id, text
from tests.unit.queue_svc.test_queue_properties import check_queue_invariants

NOW = T0 + timedelta(days=30)


def persisted(message_id: int, size: int, age: float, corr: str = "c1") -> StoredMessage:
    return StoredMessage(
        bot_id="bot",
        provider_name="p",
        correspondent_id=corr,
        id=message_id,
        content="x" * size,
        sender="u@s",
        source="user",
        originating_time=NOW - timedelta(seconds=age),
        provider_message_id=f"WA-{corr}-{message_id}",
        message_size=size,
    )


def make(clock: FakeClock | None = None, **limits: int) -> BotQueues:
    return BotQueues("bot", "p", QueueLimits(**limits), clock=clock or FakeClock())


def test_history_comes_back_in_id_order_without_backlog_or_new_ids() -> None:
    bot = make()
    bot.seed_next_ids({"c1": 9, "c2": 2})
    history = {
        "c1": [persisted(4, 3, 30), persisted(7, 5, 20), persisted(9, 2, 10)],
        "c2": [persisted(2, 4, 5, corr="c2")],
    }
    assert restore_history(bot, history, NOW) == 4
    window = bot.queue("c1").window()
    assert [(m.id, m.content, m.is_placeholder) for m in window] == [
        (4, "xxx", False),
        (7, "xxxxx", False),
        (9, "xx", False),
    ]
    assert bot.queue("c1").total_characters == 10 and bot.queue("c2").total_characters == 4
    assert bot.queue("c1").next_id == 10 and bot.queue("c2").next_id == 3
    assert bot.backlog_size == 0 and bot.pop_ready(100) == []  # never persisted again
    # Restored provider ids are known: a resent frame is a duplicate without the store.
    assert bot.add("c1", text("again", pid="WA-c1-7")).duplicate
    added = bot.add("c1", text("new", pid="WA-new")).entry
    assert added is not None and added.id == 10
    assert [r.message.id for r in bot.pop_ready(100)] == [10]


def test_limits_keep_the_newest_and_the_age_counts_from_originating_time() -> None:
    clock = FakeClock()
    bot = make(clock, max_messages=3, max_characters=12, max_age_seconds=100)
    history = [persisted(i, 4, 90 - i * 10) for i in range(1, 6)]  # ids 1-5, ages 80..40
    # Only the newest three of 4 characters fit in 12 characters.
    assert restore_history(bot, {"c1": history}, NOW) == 3
    queue = bot.queue("c1")
    assert [m.id for m in queue.counted()] == [3, 4, 5]
    clock.now += 31  # ages now 91, 81, 71 s: all within 100 s
    assert queue.enforce_limits() == []
    bot.add("c1", text("", pid="WA-x"))  # id 6; the count limit evicts the oldest, id 3
    assert [m.id for m in queue.counted()] == [4, 5, 6]
    clock.now += 40  # ids 4 and 5 are now 121 and 111 s old
    assert [m.id for m in queue.enforce_limits()] == [4, 5]
    assert [m.id for m in queue.counted()] == [6]


def test_restored_history_is_evicted_before_results_applied_at_start() -> None:
    bot = make(max_messages=3)
    mid = media_id()
    bot.inject_placeholder("c1", text("cap"), IMAGE, mid, message_id=8)
    bot.inject_placeholder("c1", text("cap"), IMAGE, media_id(), message_id=9)
    bot.resolve("c1", mid, "result")  # a completed job applied at StartBot
    kept = restore_history(
        bot, {"c1": [persisted(i, 1, 10) for i in (5, 6, 7)] + [persisted(9, 1, 1)]}, NOW
    )
    queue = bot.queue("c1")
    # id 9 is a live placeholder (a re-injected job): its history twin is not restored.
    assert [m.id for m in queue.counted()] == [6, 7, 8] and kept == 2
    assert [m.id for m in queue.placeholders()] == [9]
    assert queue.total_characters == 2 + len("result")
    assert [r.message.id for r in bot.pop_ready(100)] == [8]  # only the applied result


def test_a_message_dated_in_the_future_is_not_younger_than_what_follows() -> None:
    clock = FakeClock()
    bot = make(clock, max_age_seconds=50)
    restore_history(bot, {"c1": [persisted(1, 1, -500), persisted(2, 1, 10)]}, NOW)
    queue = bot.queue("c1")
    assert [m.ready_at for m in queue.counted()] == [clock.now, clock.now]
    clock.now += 51
    queue.enforce_limits()
    assert queue.counted() == []


# -- property: any history, any limits -------------------------------------------------

history_entry = st.tuples(
    st.integers(min_value=1, max_value=3),  # id step
    st.integers(min_value=0, max_value=20),  # size
    st.integers(min_value=0, max_value=300),  # age (s)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(history_entry, max_size=15),
    max_messages=st.integers(min_value=1, max_value=6),
    max_characters=st.integers(min_value=5, max_value=60),
    max_age=st.integers(min_value=50, max_value=200),
    placeholder_ids=st.lists(st.integers(min_value=1, max_value=45), max_size=3, unique=True),
    resolved=st.lists(st.integers(min_value=0, max_value=15), max_size=3),
    later=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 40)), max_size=10),
)
def test_restored_windows_respect_the_limits_and_the_character_total(
    entries: list[tuple[int, int, int]],
    max_messages: int,
    max_characters: int,
    max_age: int,
    placeholder_ids: list[int],
    resolved: list[int],
    later: list[tuple[int, int]],
) -> None:
    limits = QueueLimits(max_messages, max_characters, max_age, max_message_characters=15)
    clock = FakeClock()
    bot = BotQueues("bot", "p", limits, clock=clock)
    message_id, stored = 0, []
    for step, size, age in entries:
        message_id += step
        stored.append(persisted(message_id, size, age))
    bot.seed_next_ids({"c1": message_id} if stored else {})
    # What StartBot did before: jobs re-injected under their ids, some results applied.
    live: dict[int, str] = {}
    for pid in placeholder_ids:
        mid = media_id()
        bot.inject_placeholder("c1", text("cap"), IMAGE, mid, message_id=pid)
        live[pid] = mid
    applied = 0
    for size in resolved:
        if live:
            _, mid = live.popitem()
            bot.resolve("c1", mid, "r" * size)
            applied += 1
    queue = bot.queue("c1")
    before = {m.id for m in queue.counted()}
    used = before | {p.id for p in queue.placeholders()}
    next_id_before = queue.next_id

    # The store's selection (recent_messages): newest max_messages within max_age.
    since = NOW - timedelta(seconds=max_age)
    selected = [m for m in stored if m.originating_time >= since][-max_messages:]
    kept = restore_history(bot, {"c1": selected} if selected else {}, NOW)

    check_queue_invariants(bot, limits)
    counted = queue.counted()
    restored = [m for m in counted if m.id not in before]
    assert len(restored) == kept
    assert queue.next_id == next_id_before  # ids: max(persisted, placeholders) + 1
    assert all(m.id < queue.next_id for m in queue.window())
    # Only what the store selected, never an id in use, newest ones kept.
    candidates = [m for m in selected if m.id not in used]
    assert [m.id for m in restored] == [m.id for m in candidates][len(candidates) - kept :]
    # Up to the limits: the next older candidate would not have fitted.
    if kept < len(candidates):
        skipped = candidates[len(candidates) - kept - 1]
        assert (
            len(counted) + 1 > max_messages
            or queue.total_characters + skipped.message_size > max_characters
        )
    # Restored ones go ahead of the results applied at start, and the order stays
    # oldest first, so eviction takes history first.
    assert counted[: len(restored)] == restored
    assert all(a.ready_at <= b.ready_at for a, b in pairwise(counted))
    assert bot.backlog_size == applied  # history is never persisted again
    for m in selected:
        assert bot.lookup_provider_id(m.provider_message_id)[0]

    # Later traffic keeps every invariant and never reuses an id.
    ids = {m.id for m in queue.window()}
    for size, tick in later:
        clock.now += tick
        outcome = bot.add("c1", text("y" * size))
        assert outcome.entry is not None and outcome.entry.id not in ids
        ids.add(outcome.entry.id)
        check_queue_invariants(bot, limits)
        cutoff = clock.now - max_age
        assert all(m.ready_at >= cutoff for m in queue.counted())
