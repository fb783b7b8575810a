"""Learning who is who: LID <-> phone JID pairs recorded in the store, the phone JID's
queue merged into the LID's, and one identity event for the bot.

The decision that an event is due is made durably, twice over: a pair is recorded
unsettled by exactly one learner (the store's unique keys) and settled only once its
event is durable, so an interrupted merge is finished by the next StartBot; and the
event's provider id is derived from the pair, so the dedup by provider id (in memory and
in `queues`) never lets a second one through, whichever replica or restart re-learns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from services.common.store import IdentityPair, IdentityStore, MessageStore, distinct_pairs
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.identity import event_provider_id, identity_event, moved_entry
from services.queue_svc.ingestion import Ingestion
from services.queue_svc.service_types import store_call

log = logging.getLogger("queue_svc.identities")


class IdentitiesStore(IdentityStore, MessageStore, Protocol):
    """The identity map, and the persisted provider ids that recognise an event sent."""


class IdentityMetrics(Protocol):
    def identities_learned(self, count: int) -> None: ...
    def correspondents_merged(self, count: int) -> None: ...


@dataclass(slots=True)
class Learned:
    """Pairs applied to one bot: settle them once `waits` (their events) are durable."""

    pairs: list[IdentityPair] = field(default_factory=list)
    merged: int = 0
    events: list[MessageKey] = field(default_factory=list)
    waits: list[asyncio.Future[None] | None] = field(default_factory=list)


class Identities:
    def __init__(
        self, store: IdentitiesStore, ingestion: Ingestion, metrics: IdentityMetrics | None = None
    ) -> None:
        self._store = store
        self._ingestion = ingestion
        self._metrics = metrics

    async def learn(self, bot: BotQueues, pairs: Sequence[IdentityPair]) -> Learned:
        """Records the pairs this bot does not know yet and applies those recorded now."""
        fresh = [
            p
            for p in distinct_pairs(pairs)
            if not bot.identities.knows(p) and not bot.identities.conflicts(p)
        ]
        if not fresh:
            return Learned()
        recorded = await store_call(
            self._store.learn_identities(bot.bot_id, fresh), "learn_identities"
        )
        refused = len(fresh) - len(recorded)
        if refused:
            # Another learner recorded them first, or they conflict with a stored pair;
            # either way the store's pair is the one StartBot loads.
            log.info("identity pairs not recorded", extra={"bot_id": bot.bot_id, "count": refused})
        if recorded and self._metrics is not None:
            self._metrics.identities_learned(len(recorded))
        return await self.apply(bot, recorded, announce={p.phone_jid for p in recorded})

    async def apply(
        self, bot: BotQueues, pairs: Sequence[IdentityPair], announce: Collection[str]
    ) -> Learned:
        """Keeps each pair's phone JID under its LID, merging the queues; the pairs whose
        phone JID is in `announce` and had messages get the identity event (unless one
        is already in `queues`). Events are tracked by ingestion; wait on `waits`."""
        learned = Learned()
        due = [p for p in pairs if p.phone_jid in announce]
        sent: set[str] = set()
        if due:
            sent = await store_call(
                self._store.persisted_provider_ids(bot.bot_id, [event_provider_id(p) for p in due]),
                "persisted_provider_ids",
            )
        now = datetime.now(UTC)
        for pair in pairs:
            if not bot.identities.add(pair) and not bot.identities.knows(pair):
                log.warning(
                    "identity pair conflicts with a known one; ignored",
                    extra={"bot_id": bot.bot_id, "lid": pair.lid, "phone_jid": pair.phone_jid},
                )
                continue
            learned.pairs.append(pair)
            outcome = bot.merge(
                pair.phone_jid, pair.lid, partial(moved_entry, bot.identities, pair.lid)
            )
            for old, new in outcome.moved.items():
                self._ingestion.rekey(bot.bot_id, old, new)
            if not outcome.had_history or pair.phone_jid not in announce:
                continue
            learned.merged += 1
            log.info(
                "correspondent merged",
                extra={
                    "bot_id": bot.bot_id,
                    "correspondent_id": pair.lid,
                    "previous_correspondent_id": pair.phone_jid,
                    "moved": len(outcome.moved),
                },
            )
            event = identity_event(pair, now)
            if event.provider_message_id in sent:
                continue
            added = bot.add(pair.lid, event)
            if added.entry is None:
                continue
            key = MessageKey(pair.lid, added.entry.id)
            self._ingestion.track(bot.bot_id, key)
            learned.events.append(key)
            learned.waits.append(self._ingestion.durable(bot.bot_id, key))
        if learned.events:
            self._ingestion.notify()
        if learned.merged and self._metrics is not None:
            self._metrics.correspondents_merged(learned.merged)
        return learned

    async def settle(self, bot_id: str, learned: Learned) -> None:
        """After the events are durable. A failure is only logged: the pairs stay
        unsettled and the next StartBot settles them (the events stay deduplicated)."""
        if not learned.pairs:
            return
        try:
            await self._store.settle_identities(bot_id, [p.phone_jid for p in learned.pairs])
        except Exception as exc:
            log.warning(
                "identity pairs not settled; the next start settles them",
                extra={"bot_id": bot_id, "error": str(exc)},
            )
