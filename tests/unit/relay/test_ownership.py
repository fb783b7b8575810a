"""Relay ownership rounds on a real SQLite store: the fair share, handing over only idle
bots, stopping a bot whose lease is gone or not renewed in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.common.store import Store, StoreConfig, open_store
from services.relay.ownership import BOT_PREFIX, RelayOwnership

BOTS = [f"bot-{n}" for n in range(6)]
LEASE = 30.0


@dataclass
class FakeDeliverer:
    """Records what the ownership asks of the relay; `busy` and `unwanted` are set by
    the test."""

    running: set[str] = field(default_factory=set)
    busy_bots: set[str] = field(default_factory=set)
    unwanted: set[str] = field(default_factory=set)
    lost_bots: list[str] = field(default_factory=list)

    async def wanted(self, bot_id: str) -> bool:
        return bot_id not in self.unwanted

    def busy(self, bot_id: str) -> bool:
        return bot_id in self.busy_bots

    async def gained(self, bot_id: str) -> None:
        assert bot_id not in self.running
        self.running.add(bot_id)

    async def lost(self, bot_id: str) -> None:
        self.running.discard(bot_id)
        self.lost_bots.append(bot_id)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "s.db"))
    yield opened
    await opened.close()


def relay(
    store: Store, name: str, clock: Clock | None = None
) -> tuple[RelayOwnership, FakeDeliverer]:
    deliverer = FakeDeliverer()
    ownership = RelayOwnership(store, deliverer, name, LEASE, clock=clock or Clock())
    ownership.known.update(BOTS)
    return ownership, deliverer


async def test_a_joining_relay_gets_its_share_and_busy_bots_stay(store: Store) -> None:
    a, a_side = relay(store, "relay-a")
    await a.tick()
    assert a_side.running == set(BOTS) and set(a.held) == set(BOTS)
    b, b_side = relay(store, "relay-b")
    await b.tick()
    assert b.members == 2 and not b_side.running  # all held by the live relay-a
    # relay-a is above its share (3) and hands over only idle bots: one is mid-POST.
    a_side.busy_bots = set(sorted(a.held)[:4])
    await a.tick()
    assert len(a.held) == 4 and a_side.running == set(a.held)
    a_side.busy_bots = set()
    await a.tick()
    assert len(a.held) == 3
    await b.tick()
    assert len(b.held) == 3 and set(a.held).isdisjoint(b.held)
    assert set(a.held) | set(b.held) == set(BOTS)
    assert (await store.lease_holders(BOT_PREFIX)) == {
        **{BOT_PREFIX + bot: "relay-a" for bot in a.held},
        **{BOT_PREFIX + bot: "relay-b" for bot in b.held},
    }
    # Stable: another round moves nothing.
    await a.tick()
    await b.tick()
    assert len(a.held) == 3 and len(b.held) == 3


async def test_a_bot_whose_lease_is_gone_or_not_renewed_is_stopped(store: Store) -> None:
    clock = Clock()
    a, a_side = relay(store, "relay-a", clock)
    await a.tick()
    # Another holder took a bot's lease (after an outage made it expire): stopped at once.
    await store.release_lease(BOT_PREFIX + "bot-0", "relay-a")
    assert await store.acquire_lease(BOT_PREFIX + "bot-0", "relay-x", LEASE)
    await a.tick()
    assert "bot-0" not in a.held and "bot-0" not in a_side.running
    assert a_side.lost_bots == ["bot-0"]
    # No renewal within the lease time (the store hung, the process stalled): no POST
    # may start, and the next round stops the workers before anything else.
    assert a.holds("bot-1")
    clock.now += LEASE
    assert not a.holds("bot-1")
    await a.tick()
    assert set(a_side.lost_bots) == set(BOTS)
    # The leases were still its own in the store: that round took the bots back.
    assert set(a.held) == set(BOTS) - {"bot-0"} and a_side.running == set(a.held)


async def test_a_bot_without_webhook_is_given_back_and_forgotten(store: Store) -> None:
    a, a_side = relay(store, "relay-a")
    await a.tick()
    a_side.unwanted = {"bot-5"}
    await a.tick()
    assert "bot-5" not in a.held and "bot-5" not in a.known
    assert BOT_PREFIX + "bot-5" not in await store.lease_holders(BOT_PREFIX)


async def test_stop_releases_every_lease_and_the_membership(store: Store) -> None:
    a, a_side = relay(store, "relay-a")
    await a.tick()
    await a.stop()
    assert not a_side.running and not a.held
    assert await store.lease_holders("relay:") == {}
    b, b_side = relay(store, "relay-b")
    await b.tick()
    assert b_side.running == set(BOTS)


async def test_a_second_process_under_one_instance_id_takes_nothing(store: Store) -> None:
    a, _ = relay(store, "relay-a")
    await a.tick()
    # The bot leases are held by the id, so only the membership tells the twin apart.
    twin, twin_side = relay(store, "relay-a")
    await store.release_lease(BOT_PREFIX + "bot-0", "relay-a")
    await twin.tick()
    assert not twin_side.running and not twin.held
    await a.stop()
    await twin.tick()
    assert twin_side.running == set(BOTS)
