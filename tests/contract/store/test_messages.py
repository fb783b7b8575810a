"""Persisted messages (`queues`) on every leg."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store
from tests.helpers.clock import naive_now
from tests.helpers.store_factories import bare, bare_map, message, now_ms

ALICE = "4915100000001@s.whatsapp.net"
BOB = "4915100000002@s.whatsapp.net"


async def test_insert_batch_is_idempotent(store: Store) -> None:
    batch = [message(i) for i in range(1, 6)]
    assert await store.insert_messages(batch) == 5
    # A retry of the same batch (e.g. after a lost acknowledgement) adds nothing, raises nothing.
    assert await store.insert_messages(batch) == 0
    # A batch overlapping the persisted ones counts only the new messages.
    later = [message(6), message(7)]
    assert await store.insert_messages([*batch[3:], *later]) == 2
    history = await store.message_history("bot-1", "whatsapp_baileys", ALICE)
    assert bare(history) == [*batch, *later]
    assert await store.insert_messages([]) == 0


async def test_unique_index_is_on_the_tuple_not_on_id_alone(store: Store) -> None:
    assert await store.insert_messages([message(1, content="original")]) == 1
    # Same (bot, provider, correspondent, id): refused even with other content.
    assert await store.insert_messages([message(1, content="impostor")]) == 0
    # Same id elsewhere in the tuple's space: all distinct messages.
    assert (
        await store.insert_messages(
            [
                message(1, correspondent_id=BOB),
                message(1, provider_name="other_provider"),
                message(1, bot_id="bot-2"),
            ]
        )
        == 3
    )
    [kept] = await store.message_history("bot-1", "whatsapp_baileys", ALICE)
    assert kept.content == "original"


async def test_max_ids_history_and_provider_ids(store: Store) -> None:
    await store.insert_messages(
        [message(i) for i in (3, 1, 2, 10)]
        + [message(4, correspondent_id=BOB, provider_message_id="WA-bob-4")]
        + [message(99, bot_id="bot-2", provider_message_id="WA-other-bot")]
        + [message(50, provider_name="other_provider", provider_message_id="WA-other-prov")]
    )
    assert await store.max_message_ids("bot-1", "whatsapp_baileys") == {ALICE: 10, BOB: 4}
    assert await store.max_message_ids("bot-3", "whatsapp_baileys") == {}

    newest_two = await store.message_history("bot-1", "whatsapp_baileys", ALICE, limit=2)
    assert [m.id for m in newest_two] == [3, 10]
    assert await store.message_history("bot-1", "whatsapp_baileys", "nobody") == []

    asked = {"WA-1", "WA-10", "WA-bob-4", "WA-other-bot", "WA-404"}
    assert await store.persisted_provider_ids("bot-1", asked) == {"WA-1", "WA-10", "WA-bob-4"}
    assert await store.persisted_provider_ids("bot-1", []) == set()
    many = [f"WA-{i}" for i in range(2_000)]  # more than one query's parameter bound
    assert await store.persisted_provider_ids("bot-1", many) == {"WA-1", "WA-2", "WA-3", "WA-10"}


async def test_recent_messages_newest_per_correspondent_in_one_call(store: Store) -> None:
    t0 = now_ms()
    # ALICE: ids 1-6 an hour apart (6 is the youngest), and id 7 stamped long ago (a
    # message may carry an older originating_time than one persisted before it).
    alice = [message(i, originating_time=t0 - timedelta(hours=7 - i)) for i in range(1, 7)]
    alice.append(message(7, originating_time=t0 - timedelta(hours=10)))
    bob = [message(i, correspondent_id=BOB, provider_message_id=f"WA-bob-{i}") for i in (1, 2)]
    elsewhere = [
        message(8, bot_id="bot-2"),
        message(9, provider_name="other_provider"),
    ]
    assert await store.insert_messages([*alice, *bob, *elsewhere]) == 11

    recent = bare_map(await store.recent_messages("bot-1", "whatsapp_baileys", 3))
    assert recent == {ALICE: alice[4:7], BOB: bob}  # full round trip, ascending ids
    # `since` filters before the newest are counted: id 7 is too old, so 4-6 remain.
    since = t0 - timedelta(hours=3, minutes=30)
    assert bare_map(await store.recent_messages("bot-1", "whatsapp_baileys", 3, since)) == {
        ALICE: alice[3:6],
        BOB: bob,
    }
    assert bare_map(await store.recent_messages("bot-1", "whatsapp_baileys", 1, t0)) == {
        BOB: bob[1:]
    }
    assert bare_map(await store.recent_messages("bot-1", "whatsapp_baileys", 100)) == {
        ALICE: alice,
        BOB: bob,
    }
    assert await store.recent_messages("bot-1", "whatsapp_baileys", 0) == {}
    assert await store.recent_messages("bot-3", "whatsapp_baileys", 5) == {}
    with pytest.raises(InvalidInputError, match="per_correspondent"):
        await store.recent_messages("bot-1", "whatsapp_baileys", -1)
    with pytest.raises(InvalidInputError, match="timezone"):
        await store.recent_messages("bot-1", "whatsapp_baileys", 3, naive_now())


async def test_optional_media_fields_round_trip(store: Store) -> None:
    media = message(
        5,
        content="[Image] a cat on a sofa",
        group_id="120363000000000000@g.us",
        group_name="Family",
        mime_type="image/jpeg",
        original_filename="cat.jpg",
        media_kind="MEDIA_KIND_IMAGE",
        source="system",
    )
    assert await store.insert_messages([media]) == 1
    assert bare(await store.message_history("bot-1", "whatsapp_baileys", ALICE)) == [media]


async def test_structured_details_round_trip(store: Store) -> None:
    details = '{"details":{"location":{"latitude":52.52,"longitude":13.405}}}'
    located = message(6, content="📍 (52.52000, 13.40500)", details=details)
    plain = message(7, content="no details")
    assert await store.insert_messages([located, plain]) == 2
    history = await store.message_history("bot-1", "whatsapp_baileys", ALICE)
    assert [m.details for m in history if m.id in (6, 7)] == [details, None]
    recent = await store.recent_messages("bot-1", "whatsapp_baileys", 5)
    assert [m.details for m in recent[ALICE] if m.id == 6] == [details]


def test_bad_messages_are_refused_before_reaching_the_store() -> None:
    with pytest.raises(InvalidInputError, match="details must be JSON"):
        message(1, details="not json")
    with pytest.raises(InvalidInputError, match="details must be a JSON object"):
        message(1, details="[1]")
    with pytest.raises(InvalidInputError, match="source"):
        message(1, source="robot")
    with pytest.raises(InvalidInputError, match="id"):
        message(-1)
    with pytest.raises(InvalidInputError, match="timezone"):
        message(1, originating_time=naive_now())
