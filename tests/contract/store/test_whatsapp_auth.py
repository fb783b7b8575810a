"""Baileys auth state in the store, on every leg: what a Node replica writes, any other
reads back, so a session moves between pods without a new pairing."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store


async def test_values_round_trip_per_bot_and_kind(store: Store) -> None:
    await store.set_auth_values(
        "bot-a",
        {
            "creds": {"": '{"me":{"id":"4915100000001:7@s.whatsapp.net"}}'},
            "pre-key": {"1": "k1", "2": "k2"},
            "lid-mapping": {"4915100000001": "123456789012345"},
        },
    )
    await store.set_auth_values("bot-b", {"pre-key": {"1": "other bot"}})
    assert await store.get_auth_values("bot-a", "pre-key", ["1", "2", "3"]) == {
        "1": "k1",
        "2": "k2",
    }
    assert await store.get_auth_values("bot-b", "pre-key", ["1"]) == {"1": "other bot"}
    assert await store.get_auth_values("bot-a", "session", ["1"]) == {}
    assert await store.get_auth_values("bot-a", "creds", [""]) == {
        "": '{"me":{"id":"4915100000001:7@s.whatsapp.net"}}'
    }
    assert await store.get_auth_values("bot-a", "pre-key", []) == {}


async def test_a_change_set_overwrites_and_deletes(store: Store) -> None:
    await store.set_auth_values("bot", {"session": {"a": "1", "b": "2"}})
    await store.set_auth_values("bot", {"session": {"a": "1b", "b": None, "c": "3"}})
    assert await store.get_auth_values("bot", "session", ["a", "b", "c"]) == {
        "a": "1b",
        "c": "3",
    }
    # Deleting what is not there is not an error (Baileys does it).
    await store.set_auth_values("bot", {"session": {"zz": None}})
    await store.set_auth_values("bot", {})


async def test_forget_deletes_one_bot_only(store: Store) -> None:
    await store.set_auth_values("bot-a", {"creds": {"": "x"}, "pre-key": {"1": "y"}})
    await store.set_auth_values("bot-b", {"creds": {"": "z"}})
    assert await store.forget_auth("bot-a") == 2
    assert await store.get_auth_values("bot-a", "creds", [""]) == {}
    assert await store.get_auth_values("bot-b", "creds", [""]) == {"": "z"}


async def test_concurrent_writers_of_disjoint_keys_lose_nothing(store: Store) -> None:
    async def writer(n: int) -> None:
        await store.set_auth_values("bot", {"sender-key": {f"k{n}-{i}": str(i) for i in range(5)}})

    await asyncio.gather(*(writer(n) for n in range(10)))
    ids = [f"k{n}-{i}" for n in range(10) for i in range(5)]
    assert len(await store.get_auth_values("bot", "sender-key", ids)) == 50


@pytest.mark.parametrize(
    ("bot_id", "changes"),
    [
        ("", {"creds": {"": "x"}}),
        ("bot", {"Pre Key": {"1": "x"}}),
        ("bot", {"pre-key": {"x" * 600: "x"}}),
        ("bot", {"pre-key": {"1": "v" * ((1 << 20) + 1)}}),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    store: Store, bot_id: str, changes: dict[str, dict[str, str | None]]
) -> None:
    await store.set_auth_values("bot", {"pre-key": {"keep": "1"}})
    with pytest.raises(InvalidInputError):
        await store.set_auth_values(bot_id, {"pre-key": {"keep": "changed"}, **changes})
    assert await store.get_auth_values("bot", "pre-key", ["keep"]) == {"keep": "1"}
