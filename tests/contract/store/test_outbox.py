"""The outgoing-message outbox: one record per (bot, idempotency key), pending until
its first result, payloads of any size up to the media cap, on every store leg."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from services.common.errors import InvalidInputError
from services.common.store import NewOutgoing, OutboxStatus, Store, StoreConfig, open_store

ALICE = "4915100000001@s.whatsapp.net"


def outgoing(key: str, payload: bytes = b"hello", bot_id: str = "bot-1") -> NewOutgoing:
    return NewOutgoing(
        bot_id=bot_id,
        idempotency_key=key,
        correspondent_id=ALICE,
        kind="OUTGOING_KIND_TEXT",
        request_hash=hashlib.sha256(payload).hexdigest(),
        payload=payload,
    )


async def test_a_key_is_stored_once_and_the_first_request_wins(store: Store) -> None:
    first, inserted = await store.enqueue_outgoing(outgoing("k-1", b"first"))
    assert inserted and first.status is OutboxStatus.PENDING and first.payload is None
    assert first.created_at == first.updated_at
    again, inserted_again = await store.enqueue_outgoing(outgoing("k-1", b"second"))
    assert not inserted_again
    assert again.request_hash == hashlib.sha256(b"first").hexdigest()
    pending = await store.pending_outgoing("bot-1")
    assert [(r.idempotency_key, r.payload) for r in pending] == [("k-1", b"first")]
    # The same key of another bot is another message.
    _, other = await store.enqueue_outgoing(outgoing("k-1", b"x", bot_id="bot-2"))
    assert other
    assert await store.bots_with_pending_outgoing() == ["bot-1", "bot-2"]


async def test_recent_records_come_newest_first_in_any_status(store: Store) -> None:
    assert await store.recent_outgoing("bot-1") == []
    for i in range(4):
        await store.enqueue_outgoing(outgoing(f"k-{i}", f"p-{i}".encode()))
    await store.enqueue_outgoing(outgoing("k-other", bot_id="bot-2"))
    assert await store.finish_outgoing("bot-1", "k-2", OutboxStatus.SENT, "3EB0AB")
    recent = await store.recent_outgoing("bot-1", limit=3)
    assert [(r.idempotency_key, r.status, r.payload) for r in recent] == [
        ("k-3", OutboxStatus.PENDING, b"p-3"),
        ("k-2", OutboxStatus.SENT, None),  # a sent record's payload is dropped
        ("k-1", OutboxStatus.PENDING, b"p-1"),
    ]
    with pytest.raises(InvalidInputError):
        await store.recent_outgoing("bot-1", limit=-1)


async def test_pending_records_come_oldest_first_and_leave_when_finished(store: Store) -> None:
    for i in range(5):
        await store.enqueue_outgoing(outgoing(f"k-{i}", f"p-{i}".encode()))
    assert [r.idempotency_key for r in await store.pending_outgoing("bot-1", limit=3)] == [
        "k-0",
        "k-1",
        "k-2",
    ]
    assert await store.finish_outgoing("bot-1", "k-0", OutboxStatus.SENT, "3EB0AA")
    assert await store.finish_outgoing("bot-1", "k-1", OutboxStatus.FAILED, reason="bad jid")
    # The first result wins: a second one (a resent result frame) changes nothing.
    assert not await store.finish_outgoing("bot-1", "k-0", OutboxStatus.FAILED, reason="late")
    assert not await store.finish_outgoing("bot-1", "unknown", OutboxStatus.SENT, "3EB0")
    sent = await store.get_outgoing("bot-1", "k-0", with_payload=True)
    assert sent is not None and sent.status is OutboxStatus.SENT
    assert sent.provider_message_id == "3EB0AA" and sent.reason is None
    assert sent.payload is None  # dropped once sent
    assert sent.updated_at >= sent.created_at
    failed = await store.get_outgoing("bot-1", "k-1")
    assert failed is not None and failed.status is OutboxStatus.FAILED
    assert failed.reason == "bad jid"
    assert [r.idempotency_key for r in await store.pending_outgoing("bot-1")] == [
        "k-2",
        "k-3",
        "k-4",
    ]
    assert await store.get_outgoing("bot-1", "nope") is None


async def test_a_media_sized_payload_round_trips(store: Store) -> None:
    # Larger than a MongoDB document may be: the adapter must split it.
    payload = hashlib.sha256(b"seed").digest() * (17 * 1024 * 1024 // 32)
    _, inserted = await store.enqueue_outgoing(outgoing("big", payload))
    assert inserted
    record = await store.get_outgoing("bot-1", "big", with_payload=True)
    assert record is not None and record.payload == payload
    [pending] = await store.pending_outgoing("bot-1")
    assert pending.payload == payload


async def test_concurrent_enqueues_of_one_key_store_one_record(store_config: StoreConfig) -> None:
    stores = [await open_store(store_config) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(
                s.enqueue_outgoing(outgoing("race", f"body-{i}".encode()))
                for i, s in enumerate(stores)
            ),
        )
        assert sum(inserted for _, inserted in results) == 1
        hashes = {record.request_hash for record, _ in results}
        assert len(hashes) == 1
        [pending] = await stores[0].pending_outgoing("bot-1")
        assert hashlib.sha256(pending.payload or b"").hexdigest() in hashes
    finally:
        for s in stores:
            await s.close()


async def test_records_survive_a_reopen(store_config: StoreConfig) -> None:
    first = await open_store(store_config)
    try:
        await first.enqueue_outgoing(outgoing("kept"))
    finally:
        await first.close()
    second = await open_store(store_config)
    try:
        [pending] = await second.pending_outgoing("bot-1")
        assert pending.idempotency_key == "kept" and pending.payload == b"hello"
    finally:
        await second.close()


@pytest.mark.parametrize("key", ["", "k" * 129])
async def test_bad_keys_are_refused_without_a_change(store: Store, key: str) -> None:
    with pytest.raises(InvalidInputError):
        await store.enqueue_outgoing(outgoing(key))
    with pytest.raises(InvalidInputError):
        await store.get_outgoing("bot-1", key)
    with pytest.raises(InvalidInputError):
        await store.finish_outgoing("bot-1", "k", OutboxStatus.PENDING)
    assert await store.bots_with_pending_outgoing() == []
