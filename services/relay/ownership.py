"""Which relay replica delivers which bot: one deliverer per bot at a time, by a renewable
lease in the store (`relay:bot:<bot id>`, holder = the relay's instance id).

Every round (a third of the lease time, or at once when a bot nobody delivers shows up)
a relay renews its membership lease `relay:member:<instance id>`, renews the bots it
holds (a bot whose renewal fails is stopped at once), and takes free bots up to its fair
share, ceil(webhook bots / live relays); beyond that share it gives back idle bots, so a
relay that joins gets its part without a restart. A relay that dies stops renewing: its
bots are free once their leases expire and the others take them (their share grew too,
as its membership lease expired with them).

Leases are not a fence against a paused relay: a relay that has not renewed within the
lease time stops starting POSTs for its bots (`holds`), and its in-flight POST may still
end after the next owner began. That repeat carries the same idempotency key. Cursors
move only forward (`advance_cursor`), and a relay moves a bot's cursor to a sequence
only after it handled every message between the cursor it took the bot at and that one,
so whichever relay writes last, the cursor never passes an unhandled message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from services.common.store import LeaseStore

log = logging.getLogger("relay.ownership")

MEMBER_PREFIX = "relay:member:"
BOT_PREFIX = "relay:bot:"


class Deliverer(Protocol):
    """The relay side of ownership: start and stop a bot's worker."""

    async def wanted(self, bot_id: str) -> bool:
        """The bot has a webhook (so it needs a deliverer)."""

    def busy(self, bot_id: str) -> bool:
        """A POST of the bot is in flight: not a bot to give back now."""

    async def gained(self, bot_id: str) -> None:
        """Start the bot's worker, from the cursor stored now."""

    async def lost(self, bot_id: str) -> None:
        """Stop the bot's worker now (an in-flight POST is abandoned)."""


def preference(instance_id: str, bot_id: str) -> bytes:
    """Free bots are taken in rendezvous order, so two relays racing for free bots mostly
    reach for different ones, and a bot tends to return to the same relay."""
    return hashlib.sha256(f"{instance_id}\0{bot_id}".encode()).digest()


class RelayOwnership:
    def __init__(
        self,
        store: LeaseStore,
        deliverer: Deliverer,
        instance_id: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._deliverer = deliverer
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self._clock = clock
        # Held bot → until when this relay may start POSTs for it (the lease's expiry as
        # seen from here: measured from before the renewal was asked for).
        self.held: dict[str, float] = {}
        # Webhook bots seen (stream, stored cursors, others' leases).
        self.known: set[str] = set()
        self.members = 1
        # The membership lease's holder: the id and this process, so a second process
        # started under the same RELAY_INSTANCE_ID takes no bot while the first lives.
        self._member_holder = f"{instance_id}/{uuid.uuid4().hex}"
        self._wake = asyncio.Event()
        self._stopped = False

    def holds(self, bot_id: str) -> bool:
        until = self.held.get(bot_id)
        return until is not None and self._clock() < until

    def notice(self, bot_id: str) -> None:
        """A message of a webhook bot came: a bot nobody here knew gets a round now."""
        if bot_id not in self.known:
            self.known.add(bot_id)
            self._wake.set()

    async def run(self) -> None:
        # Rounds start every third of the lease however long one takes (a slow store),
        # so a renewal is never later than that after the previous one.
        interval = self.lease_seconds / 3
        while not self._stopped:
            self._wake.clear()
            started = self._clock()
            try:
                await self.tick()
            except Exception as error:  # a store outage: the deadlines in `held` rule
                log.warning("ownership round failed; retrying", extra={"error": str(error)})
                await self._drop_expired()
            remaining = interval - (self._clock() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)

    async def tick(self) -> None:
        await self._drop_expired()
        # Renewals first: the rest of the round may be slow.
        for bot_id in list(self.held):
            asked = self._clock()
            if await self._store.acquire_lease(
                BOT_PREFIX + bot_id, self.instance_id, self.lease_seconds
            ):
                self.held[bot_id] = asked + self.lease_seconds
            else:
                await self._lose(bot_id, "its lease is held by another relay")
        member = MEMBER_PREFIX + self.instance_id
        if not await self._store.acquire_lease(member, self._member_holder, self.lease_seconds):
            log.error(
                "this RELAY_INSTANCE_ID is held by another process (a second relay under"
                " this id, or this replica's previous run until its lease expires)",
                extra={"instance": self.instance_id},
            )
            return
        self.members = max(1, len(await self._store.lease_holders(MEMBER_PREFIX)))
        holders = {
            name.removeprefix(BOT_PREFIX): holder
            for name, holder in (await self._store.lease_holders(BOT_PREFIX)).items()
        }
        self.known |= set(holders)
        for bot_id in list(self.known):
            if not await self._deliverer.wanted(bot_id):
                self.known.discard(bot_id)
                if bot_id in self.held and not self._deliverer.busy(bot_id):
                    await self._give_back(bot_id, "it has no webhook any more")
        share = math.ceil(len(self.known) / self.members)
        if self.members > 1:
            for bot_id in sorted(self.held, key=lambda b: preference(self.instance_id, b)):
                if len(self.held) <= share:
                    break
                if not self._deliverer.busy(bot_id):
                    await self._give_back(bot_id, "more than this relay's share")
                    holders[bot_id] = ""  # released for the others, not to be retaken
        # A lease still under this relay's id but dropped here (not renewed in time) is
        # as free as an expired one: nobody else took it.
        free = [
            b
            for b in self.known
            if holders.get(b, self.instance_id) == self.instance_id and b not in self.held
        ]
        free.sort(key=lambda b: preference(self.instance_id, b), reverse=True)
        for bot_id in free:
            if len(self.held) >= share or self._stopped:
                break
            asked = self._clock()
            if await self._store.acquire_lease(
                BOT_PREFIX + bot_id, self.instance_id, self.lease_seconds
            ):
                self.held[bot_id] = asked + self.lease_seconds
                log.info("took the bot", extra={"bot_id": bot_id, "share": share})
                await self._deliverer.gained(bot_id)

    async def stop(self) -> None:
        """Every bot's worker stopped and its lease released, then the membership: the
        other relays take the bots at their next round instead of after the lease time."""
        self._stopped = True
        self._wake.set()
        for bot_id in list(self.held):
            await self._give_back(bot_id, "shutting down")
        with contextlib.suppress(Exception):
            await self._store.release_lease(MEMBER_PREFIX + self.instance_id, self._member_holder)

    async def _drop_expired(self) -> None:
        for bot_id in [b for b in self.held if not self.holds(b)]:
            await self._lose(bot_id, "its lease was not renewed in time")

    async def _lose(self, bot_id: str, why: str) -> None:
        self.held.pop(bot_id, None)
        log.warning("stopped delivering the bot", extra={"bot_id": bot_id, "why": why})
        await self._deliverer.lost(bot_id)

    async def _give_back(self, bot_id: str, why: str) -> None:
        """The worker first, then the lease: the next owner never overlaps this one."""
        self.held.pop(bot_id, None)
        log.info("handing the bot over", extra={"bot_id": bot_id, "why": why})
        await self._deliverer.lost(bot_id)
        try:
            await self._store.release_lease(BOT_PREFIX + bot_id, self.instance_id)
        except Exception as error:  # it expires instead
            log.warning("lease not released", extra={"bot_id": bot_id, "error": str(error)})
