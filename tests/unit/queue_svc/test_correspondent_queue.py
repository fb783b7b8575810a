"""CorrespondentQueue: SPEC section 3, review 1 §6.4 (1, 2, 5), review 2 P2, P3, P7."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInputError
from services.common.truncation import truncate_marked
from services.queue_svc.correspondent_queue import CorrespondentQueue, UpdateStatus
from services.queue_svc.messages import QueueLimits
from tests.unit.queue_svc.helpers import IMAGE, FakeClock, media_id, text


def make(clock: FakeClock | None = None, **limits: int) -> CorrespondentQueue:
    return CorrespondentQueue(QueueLimits(**limits), clock=clock or FakeClock())


def test_append_assigns_increasing_ids_truncates_and_counts() -> None:
    q = make(max_message_characters=5)
    first, _ = q.append(text("abc"))
    second, _ = q.append(text("abcdefgh"))
    assert (first.id, second.id) == (1, 2)
    assert second.content == "abcde" and second.message_size == 5
    assert q.total_characters == 8
    assert q.next_id == 3


def test_placeholder_is_not_truncated_not_counted_and_takes_next_id() -> None:
    q = make(max_message_characters=3)
    q.append(text("ab"))
    mid = media_id()
    entry, created = q.inject_placeholder(text("a long caption"), IMAGE, mid)
    assert created and entry.id == 2 and entry.is_placeholder
    assert entry.content == "a long caption"
    assert q.total_characters == 2 and q.counted_count == 1 and q.placeholder_count == 1
    assert [e.id for e in q.window()] == [1, 2]


def test_injecting_a_known_media_id_returns_the_existing_placeholder() -> None:
    q = make()
    mid = media_id()
    first, _ = q.inject_placeholder(text("cap"), IMAGE, mid)
    again, created = q.inject_placeholder(text("other"), IMAGE, mid)
    assert not created and again is first and q.next_id == 2


def test_recovered_id_that_collides_with_a_message_is_rejected() -> None:
    q = make()
    q.append(text())
    with pytest.raises(InvalidInputError, match="already used"):
        q.inject_placeholder(text(), IMAGE, media_id(), message_id=1)


# -- P7: id monotonicity after recovery -----------------------------------------------


def test_p7_next_id_goes_past_reinjected_placeholders() -> None:
    q = make()
    q.seed_next_id(41)  # the store's max persisted id is 40
    q.inject_placeholder(text(), IMAGE, media_id(), message_id=41)
    q.inject_placeholder(text(), IMAGE, media_id(), message_id=42)
    entry, _ = q.append(text("after recovery"))
    assert entry.id == 43


def test_p7_reinjecting_a_lower_id_never_moves_next_id_back() -> None:
    q = make()
    q.seed_next_id(50)
    q.inject_placeholder(text(), IMAGE, media_id(), message_id=7)
    assert q.next_id == 50
    q.seed_next_id(10)
    assert q.next_id == 50


# -- P2: UpdateByMediaId contract -----------------------------------------------------


def test_p2_update_adjusts_total_by_exactly_the_new_size_and_reports_updated() -> None:
    q = make()
    q.append(text("x" * 100))
    mid = media_id()
    placeholder, _ = q.inject_placeholder(text(""), IMAGE, mid)
    assert q.total_characters == 100
    outcome, evicted = q.resolve(mid, "t" * 1800)
    assert outcome.status is UpdateStatus.UPDATED
    assert outcome.entry is placeholder and outcome.message_id == placeholder.id
    assert placeholder.content == "t" * 1800 and placeholder.message_size == 1800
    assert placeholder.media_processing_id is None and not placeholder.is_placeholder
    assert q.total_characters == 1900 and evicted == []
    assert q.placeholder_count == 0 and q.counted_count == 2


def test_p2_update_with_caption_counts_only_the_new_content() -> None:
    q = make()
    mid = media_id()
    q.inject_placeholder(text("caption of 19 chars"), IMAGE, mid)
    assert q.total_characters == 0
    q.resolve(mid, "result")
    assert q.total_characters == len("result")


def test_p2_update_truncates_like_add_message() -> None:
    q = make(max_message_characters=10)
    mid = media_id()
    q.inject_placeholder(text(""), IMAGE, mid)
    outcome, _ = q.resolve(mid, "y" * 50)
    assert outcome.entry is not None and outcome.entry.message_size == 10
    assert q.total_characters == 10


def test_repeated_update_is_updated_without_a_second_entry_to_emit() -> None:
    q = make()
    mid = media_id()
    q.inject_placeholder(text(""), IMAGE, mid)
    first, _ = q.resolve(mid, "done")
    second, _ = q.resolve(mid, "something else")
    assert first.entry is not None
    assert second.status is UpdateStatus.UPDATED and second.entry is None
    assert second.message_id == first.message_id
    assert first.entry.content == "done" and q.total_characters == 4


def test_update_of_unknown_media_id_is_not_found_and_changes_nothing() -> None:
    q = make()
    q.append(text("abc"))
    outcome, evicted = q.resolve(media_id(), "x")
    assert outcome.status is UpdateStatus.NOT_FOUND and outcome.entry is None
    assert evicted == [] and q.total_characters == 3 and q.counted_count == 1


def test_placeholder_whose_update_exceeds_the_character_limit_evicts_oldest_counted() -> None:
    q = make(max_characters=100)
    a, _ = q.append(text("a" * 40))
    b, _ = q.append(text("b" * 40))
    mid = media_id()
    q.inject_placeholder(text(""), IMAGE, mid)
    other = media_id()
    q.inject_placeholder(text(""), IMAGE, other)
    outcome, evicted = q.resolve(mid, "m" * 50)
    assert [e.id for e in evicted] == [a.id]
    assert q.total_characters == 90
    assert outcome.entry is not None and outcome.entry in q.counted()
    assert b in q.counted() and q.placeholder(other) is not None


# -- P3: eviction counts and evicts non-placeholders only -----------------------------


def test_p3_all_placeholder_queue_evicts_nothing() -> None:
    clock = FakeClock()
    q = make(clock, max_messages=2, max_characters=10, max_age_seconds=5)
    mids = [media_id() for _ in range(5)]
    for mid in mids:
        q.inject_placeholder(text("caption longer than the character limit"), IMAGE, mid)
    clock.now += 60
    assert q.enforce_limits() == []
    assert q.placeholder_count == 5 and q.total_characters == 0


def test_p3_count_limit_ignores_placeholders_and_evicts_oldest_message() -> None:
    q = make(max_messages=2)
    q.inject_placeholder(text(), IMAGE, media_id())  # placeholder at index 0
    m1, _ = q.append(text("1"))
    q.inject_placeholder(text(), IMAGE, media_id())  # placeholder in the middle
    m2, _ = q.append(text("2"))
    assert q.counted_count == 2 and q.placeholder_count == 2
    m3, evicted = q.append(text("3"))
    assert evicted == [m1]
    assert [e.id for e in q.counted()] == [m2.id, m3.id]
    assert q.placeholder_count == 2
    assert [e.is_placeholder for e in q.window()] == [True, True, False, False]


def test_p3_character_limit_counts_only_non_placeholders() -> None:
    q = make(max_characters=10)
    q.inject_placeholder(text("p" * 500), IMAGE, media_id())
    a, _ = q.append(text("a" * 6))
    b, evicted = q.append(text("b" * 6))
    assert evicted == [a]
    assert q.total_characters == 6 and q.placeholder_count == 1
    assert q.counted() == [b]


def test_p3_age_limit_evicts_old_messages_but_not_old_placeholders() -> None:
    clock = FakeClock()
    q = make(clock, max_age_seconds=60)
    mid = media_id()
    q.inject_placeholder(text(), IMAGE, mid)
    old, _ = q.append(text("old"))
    clock.now += 61
    fresh, evicted = q.append(text("fresh"))
    assert evicted == [old]
    assert q.counted() == [fresh] and q.placeholder(mid) is not None
    assert q.total_characters == len("fresh")


def test_a_message_alone_over_the_character_limit_is_evicted_itself() -> None:
    q = make(max_characters=5, max_message_characters=8)
    entry, evicted = q.append(text("x" * 8))
    assert evicted == [entry] and q.total_characters == 0 and q.counted_count == 0


def test_resolved_placeholder_is_evicted_in_the_order_it_became_ready() -> None:
    q = make(max_messages=2)
    mid = media_id()
    placeholder, _ = q.inject_placeholder(text(), IMAGE, mid)  # id 1
    m2, _ = q.append(text("2"))
    q.resolve(mid, "transcript")  # ready after m2: evicted after it
    m3, evicted = q.append(text("3"))
    assert evicted == [m2]
    assert [e.id for e in q.window()] == [placeholder.id, m3.id]


def test_window_lists_everything_in_id_order_with_placeholders() -> None:
    q = make()
    q.append(text("1"))
    mid = media_id()
    q.inject_placeholder(text("cap"), IMAGE, mid)
    q.append(text("3"))
    q.resolve(mid, "img")
    assert [(e.id, e.content) for e in q.window()] == [(1, "1"), (2, "img"), (3, "3")]


def test_a_truncated_message_says_so_in_its_text() -> None:
    q = make(max_message_characters=8_000)
    entry, _ = q.append(text("y" * 100_000))
    assert len(entry.content) == entry.message_size == 8_000
    kept = entry.content.count("y")
    assert entry.content.endswith(f" … [message truncated: {100_000 - kept:,} more characters]")
    mid = media_id()
    q.inject_placeholder(text(""), IMAGE, mid)
    outcome, _ = q.resolve(mid, "z" * 8_001)
    assert outcome.entry is not None and outcome.entry.message_size == 8_000
    assert outcome.entry.content.endswith("more characters]")
    assert truncate_marked("short", 8_000) == "short"
