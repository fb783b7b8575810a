"""Delivery sequences of persisted messages and the cursors of named consumers."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store, StoreConfig, open_store
from tests.helpers.store_factories import message

BOB = "4915100000002@s.whatsapp.net"


async def test_every_new_row_gets_its_bots_next_sequence(store: Store) -> None:
    first = await store.append_messages([message(1), message(2), message(1, bot_id="bot-2")])
    assert first.sequences == [1, 2, 1] and first.inserted == 3
    # A retried row keeps the sequence it got; only new rows take new numbers.
    again = await store.append_messages([message(2), message(3), message(1, correspondent_id=BOB)])
    assert again.sequences == [2, 3, 4] and again.inserted == 2
    assert await store.max_sequence("bot-1") == 4
    assert await store.max_sequence("bot-2") == 1
    assert await store.max_sequence("nobody") == 0
    assert await store.insert_messages([message(5)]) == 1
    assert await store.max_sequence("bot-1") == 5


async def test_a_batch_numbers_each_bot_on_from_its_top_and_a_repeat_within_it_once(
    store: Store,
) -> None:
    await store.append_messages([message(1), message(1, bot_id="bot-2")])
    mixed = await store.append_messages(
        [message(2), message(1, bot_id="bot-3"), message(2, bot_id="bot-2"), message(3)]
    )
    assert mixed.sequences == [2, 1, 2, 3] and mixed.inserted == 4
    # One message twice in one batch: stored once, both answered with its sequence.
    repeated = await store.append_messages([message(4), message(5), message(4)])
    assert repeated.sequences == [4, 5, 4] and repeated.inserted == 2
    assert await store.max_sequence("bot-1") == 5


async def test_sequences_continue_after_the_store_is_reopened(store_config: StoreConfig) -> None:
    store = await open_store(store_config)
    try:
        await store.append_messages([message(i) for i in range(1, 4)])
    finally:
        await store.close()
    reopened = await open_store(store_config)
    try:
        result = await reopened.append_messages([message(4)])
        assert result.sequences == [4]
    finally:
        await reopened.close()


async def test_messages_after_pages_in_sequence_order(store: Store) -> None:
    # Ids out of sequence order across correspondents: replay follows the sequence.
    await store.append_messages([message(7), message(1, correspondent_id=BOB), message(8)])
    await store.append_messages([message(2, correspondent_id=BOB)])
    page = await store.messages_after("bot-1", 0, limit=3)
    assert [(m.correspondent_id == BOB, m.id, m.sequence) for m in page] == [
        (False, 7, 1),
        (True, 1, 2),
        (False, 8, 3),
    ]
    rest = await store.messages_after("bot-1", 3)
    assert [(m.id, m.sequence) for m in rest] == [(2, 4)]
    assert await store.messages_after("bot-1", 4) == []
    assert await store.messages_after("bot-2", 0) == []
    with pytest.raises(InvalidInputError):
        await store.messages_after("bot-1", 0, limit=-1)


async def test_cursors_only_move_forward(store: Store) -> None:
    assert await store.delivery_cursors("relay") == {}
    assert await store.advance_cursor("relay", "bot-1", 5)
    assert await store.advance_cursor("relay", "bot-2", 0)
    assert not await store.advance_cursor("relay", "bot-1", 3)
    assert not await store.advance_cursor("relay", "bot-1", 5)
    assert await store.advance_cursor("relay", "bot-1", 9)
    assert await store.advance_cursor("other", "bot-1", 1)
    assert await store.delivery_cursors("relay") == {"bot-1": 9, "bot-2": 0}
    assert await store.delivery_cursors("other") == {"bot-1": 1}
    for consumer, bot_id, sequence in (("", "b", 1), ("c", "", 1), ("c", "b", -1)):
        with pytest.raises(InvalidInputError):
            await store.advance_cursor(consumer, bot_id, sequence)
    assert await store.delivery_cursors("c") == {}
