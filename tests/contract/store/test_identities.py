"""The identity map (LID ↔ phone JID per bot) on every leg of the store."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import InvalidInputError
from services.common.store import IdentityPair, KnownIdentity, Store, StoreConfig, open_store

ANA = IdentityPair("111@lid", "4915100000001@s.whatsapp.net")
BEN = IdentityPair("222@lid", "4915100000002@s.whatsapp.net")


async def test_a_pair_is_learned_once_and_read_back_unsettled(store: Store) -> None:
    assert await store.learn_identities("bot-1", [ANA, BEN]) == [ANA, BEN]
    assert await store.learn_identities("bot-1", [ANA]) == []
    assert await store.identities("bot-1") == [KnownIdentity(ANA, False), KnownIdentity(BEN, False)]
    # Per bot: another bot learns the same pair for itself.
    assert await store.learn_identities("bot-2", [ANA]) == [ANA]
    assert await store.identities("nobody") == []


async def test_the_first_pair_wins_for_a_lid_and_for_a_phone(store: Store) -> None:
    assert await store.learn_identities("bot-1", [ANA]) == [ANA]
    same_lid = IdentityPair(ANA.lid, "4915100000009@s.whatsapp.net")
    same_phone = IdentityPair("999@lid", ANA.phone_jid)
    # Within one call too: the second pair naming the LID is dropped, BEN is new.
    assert await store.learn_identities("bot-1", [same_lid, same_phone, BEN, BEN]) == [BEN]
    assert [k.pair for k in await store.identities("bot-1")] == [ANA, BEN]


async def test_settling_marks_only_the_named_pairs(store: Store) -> None:
    await store.learn_identities("bot-1", [ANA, BEN])
    assert await store.settle_identities("bot-1", [ANA.phone_jid, ANA.phone_jid]) == 1
    assert await store.settle_identities("bot-1", [ANA.phone_jid]) == 0
    assert await store.settle_identities("bot-2", [BEN.phone_jid]) == 0
    assert await store.settle_identities("bot-1", []) == 0
    assert await store.identities("bot-1") == [KnownIdentity(ANA, True), KnownIdentity(BEN, False)]


async def test_concurrent_learners_of_one_pair_record_it_once(store: Store) -> None:
    results = await asyncio.gather(*(store.learn_identities("bot-1", [ANA]) for _ in range(8)))
    assert sorted(len(r) for r in results) == [0] * 7 + [1]


async def test_the_map_survives_reopening_the_store(store_config: StoreConfig) -> None:
    first = await open_store(store_config)
    try:
        await first.learn_identities("bot-1", [ANA])
        await first.settle_identities("bot-1", [ANA.phone_jid])
    finally:
        await first.close()
    again = await open_store(store_config)
    try:
        assert await again.identities("bot-1") == [KnownIdentity(ANA, True)]
        assert await again.learn_identities("bot-1", [ANA]) == []
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("lid", "phone_jid"),
    [
        ("111@s.whatsapp.net", ANA.phone_jid),
        ("@lid", ANA.phone_jid),
        ("1@2@lid", ANA.phone_jid),
        (ANA.lid, "123@lid"),
        (ANA.lid, "12-3@s.whatsapp.net"),
        (ANA.lid, "120363@g.us"),
    ],
)
def test_half_a_pair_or_a_group_is_refused(lid: str, phone_jid: str) -> None:
    with pytest.raises(InvalidInputError):
        IdentityPair(lid, phone_jid)


async def test_bad_input_changes_nothing(store: Store) -> None:
    with pytest.raises(InvalidInputError):
        await store.learn_identities("", [ANA])
    with pytest.raises(InvalidInputError):
        await store.settle_identities("", [ANA.phone_jid])
    assert await store.identities("bot-1") == []
