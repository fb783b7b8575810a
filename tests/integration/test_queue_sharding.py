"""Two QueueService shards on one SQLite file (two store connections, as two processes
would have): each serves only its own bots, refuses the others' lifecycle calls by
naming the right shard, and resumes only its own bots after a restart while the shared
registry of active bots keeps everyone's entries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.errors import PreconditionError
from services.common.sharding import ShardIdentity
from services.common.store import Store, StoreConfig, open_store
from services.queue_svc.service import AddItem, AddStatus, QueueService, ServiceSettings
from tests.helpers.shards import bot_on_shard
from tests.unit.queue_svc.helpers import text

BOT_0 = bot_on_shard(0, 2)
BOT_1 = bot_on_shard(1, 2)


def settings(index: int) -> ServiceSettings:
    return ServiceSettings(
        write_timeout_seconds=5.0,
        definitions_refresh_seconds=0.0,
        shard=ShardIdentity(index, 2),
    )


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    config = StoreConfig(backend="sqlite", sqlite_path=tmp_path / "chatbot.sqlite3")
    first, second = await open_store(config), await open_store(config)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_each_shard_serves_and_resumes_only_its_own_bots(
    stores: tuple[Store, Store],
) -> None:
    store_0, store_1 = stores
    shard_0 = QueueService(store_0, settings(0))
    shard_1 = QueueService(store_1, settings(1))
    assert await shard_0.start() == [] and await shard_1.start() == []
    assert (await shard_0.start_bot(BOT_0)).started
    assert (await shard_1.start_bot(BOT_1)).started

    with pytest.raises(PreconditionError) as refused:
        await shard_1.start_bot(BOT_0)
    assert f"bot {BOT_0!r} belongs to queue_svc shard 0 of 2" in str(refused.value)
    assert "entry 1 of QUEUE_SVC_ADDRESS" in str(refused.value)
    with pytest.raises(PreconditionError, match="belongs to queue_svc shard 1 of 2"):
        await shard_0.stop_bot(BOT_1)
    assert not shard_1.is_active(BOT_0) and not shard_0.is_active(BOT_1)
    # A write for a bot of the other shard finds it inactive there.
    [added] = await shard_1.add_messages([AddItem(BOT_0, "c1", text("misrouted"))])
    assert added.status is AddStatus.BOT_NOT_ACTIVE
    assert await store_0.active_bots() == sorted([BOT_0, BOT_1])

    # Shard 0 restarts: it resumes its bot; shard 1's entry is neither resumed nor lost.
    await shard_0.shutdown()
    shard_0 = QueueService(store_0, settings(0))
    assert await shard_0.start() == [BOT_0]
    assert shard_0.is_active(BOT_0) and not shard_0.is_active(BOT_1)
    assert await store_0.active_bots() == sorted([BOT_0, BOT_1])

    # Stopping a bot removes only its own entry.
    assert (await shard_1.stop_bot(BOT_1)).stopped
    assert await store_0.active_bots() == [BOT_0]
    await shard_0.shutdown()
    await shard_1.shutdown()


async def test_shards_starting_and_stopping_bots_at_once_keep_every_entry(
    stores: tuple[Store, Store],
) -> None:
    services = [QueueService(store, settings(i)) for i, store in enumerate(stores)]
    for service in services:
        await service.start()
    bots = [[bot_on_shard(i, 2, f"many{n}") for n in range(15)] for i in range(2)]
    await asyncio.gather(
        *(services[i].start_bot(bot) for i in range(2) for bot in bots[i]),
    )
    stopped = [bots[i][n] for i in range(2) for n in range(0, 15, 3)]
    await asyncio.gather(*(services[i].stop_bot(b) for i in range(2) for b in bots[i][::3]))
    expected = sorted({b for shard in bots for b in shard} - set(stopped))
    assert await stores[0].active_bots() == expected
    for service in services:
        await service.shutdown()
