"""Webhook dead letters: put (replacing the same sequence), list in sequence order per
bot, get, delete, counts; bad input refused with no change."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store, StoreConfig, WebhookDeadLetter, open_store
from tests.helpers.store_factories import now_ms

CHAT = "4915100000001@s.whatsapp.net"


def letter(sequence: int = 1, bot_id: str = "bot-1", **overrides: Any) -> WebhookDeadLetter:
    now = now_ms()
    fields: dict[str, Any] = {
        "bot_id": bot_id,
        "sequence": sequence,
        "correspondent_id": CHAT,
        "body": json.dumps({"message": {"content": "hi ünïcode"}, "sequence": sequence}),
        "attempts": 2,
        "outcome": "http_410",
        "status": 410,
        "reason": "HTTP 410: gone",
        "first_attempt_at": now - timedelta(seconds=3),
        "last_attempt_at": now - timedelta(seconds=1),
        "dead_lettered_at": now,
    }
    fields.update(overrides)
    return WebhookDeadLetter(**fields)


async def test_dead_letters_are_kept_listed_and_deleted(store: Store) -> None:
    assert await store.webhook_dead_letters("bot-1") == []
    assert await store.webhook_dead_letter_counts() == {}
    seven, three = letter(7), letter(3, outcome="timeout", status=None, reason="no answer")
    other = letter(3, bot_id="bot-2")
    for item in (seven, three, other):
        assert await store.put_webhook_dead_letter(item)
    assert await store.webhook_dead_letters("bot-1") == [three, seven]
    assert await store.webhook_dead_letters("bot-1", after_sequence=3) == [seven]
    assert await store.webhook_dead_letters("bot-1", limit=1) == [three]
    assert await store.webhook_dead_letters("bot-1", limit=0) == []
    assert await store.webhook_dead_letters("bot-2") == [other]
    assert await store.get_webhook_dead_letter("bot-1", 7) == seven
    assert await store.get_webhook_dead_letter("bot-1", 8) is None
    assert await store.webhook_dead_letter_counts() == {"bot-1": 2, "bot-2": 1}
    assert seven.idempotency_key == "bot-1:7"

    assert await store.delete_webhook_dead_letter("bot-1", 3)
    assert not await store.delete_webhook_dead_letter("bot-1", 3)
    assert await store.webhook_dead_letters("bot-1") == [seven]
    assert await store.get_webhook_dead_letter("bot-2", 3) == other


async def test_a_second_put_of_one_sequence_replaces_it(store: Store) -> None:
    first = letter(5)
    assert await store.put_webhook_dead_letter(first)
    again = replace(first, attempts=4, outcome="http_500", status=500, reason="HTTP 500")
    assert not await store.put_webhook_dead_letter(again)
    assert await store.webhook_dead_letters("bot-1") == [again]
    assert await store.webhook_dead_letter_counts() == {"bot-1": 1}


@pytest.mark.parametrize(
    "overrides",
    [
        {"sequence": 0},
        {"sequence": True},
        {"attempts": 0},
        {"bot_id": ""},
        {"correspondent_id": ""},
        {"outcome": ""},
        {"status": 99},
        {"reason": "x" * 1025},
    ],
)
def test_malformed_dead_letters_are_refused(overrides: dict[str, Any]) -> None:
    fields = {"sequence": 1, **overrides}
    with pytest.raises(InvalidInputError):
        letter(**fields)


async def test_bad_arguments_change_nothing(store: Store) -> None:
    await store.put_webhook_dead_letter(letter(1))
    with pytest.raises(InvalidInputError):
        await store.webhook_dead_letters("bot-1", limit=-1)
    for sequence in (0, -1):
        with pytest.raises(InvalidInputError):
            await store.delete_webhook_dead_letter("bot-1", sequence)
        with pytest.raises(InvalidInputError):
            await store.get_webhook_dead_letter("bot-1", sequence)
    assert await store.webhook_dead_letter_counts() == {"bot-1": 1}


async def test_dead_letters_survive_a_reopen(store_config: StoreConfig) -> None:
    kept = letter(11)
    store = await open_store(store_config)
    try:
        await store.put_webhook_dead_letter(kept)
    finally:
        await store.close()
    reopened = await open_store(store_config)
    try:
        assert await reopened.webhook_dead_letters("bot-1") == [kept]
    finally:
        await reopened.close()
