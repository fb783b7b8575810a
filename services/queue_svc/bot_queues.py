"""All correspondent queues of one active bot, its persistence backlog and its dedup memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from services.queue_svc.correspondent_queue import (
    Clock,
    CorrespondentQueue,
    ResolveOutcome,
    UpdateStatus,
)
from services.queue_svc.identity_map import IdentityMap
from services.queue_svc.messages import MediaInfo, NewMessage, QueuedMessage, QueueLimits

# Durable provider ids remembered per bot. Small on purpose: every new WhatsApp id misses
# the memory anyway and is checked against the store (one query per batch), so this only
# spares that query for a resend that follows its original closely. Ids that are not yet
# durable are kept apart and never forgotten (the store cannot answer for them).
DEFAULT_DEDUP_CAPACITY = 2_000
# Media ids of resolved placeholders, so a repeated UpdateByMediaId is answered UPDATED
# again instead of NOT_FOUND; media_svc repeats only while retrying one delivery.
RESOLVED_MEDIA_CAPACITY = 10_000


class MessageKey(NamedTuple):
    """Where an accepted message lives: (correspondent, id) within the bot.

    A named tuple, not a frozen dataclass: every text message's key is built about three
    times and hashed about five (backlog, pending writers, dedup memory), and a tuple
    does both in C, where the dataclass ran Python code for each.
    """

    correspondent_id: str
    id: int


@dataclass(frozen=True, slots=True)
class ReadyMessage:
    """A ready message waiting in the persistence backlog."""

    correspondent_id: str
    message: QueuedMessage

    @property
    def key(self) -> MessageKey:
        return MessageKey(self.correspondent_id, self.message.id)


@dataclass(frozen=True, slots=True)
class AddOutcome:
    """AddMessage's result: the new entry, or the key of the message it duplicates.

    `duplicate_of` is None for a duplicate that is only known to be persisted (the
    store answered, or the memory entry is older than the window).
    """

    entry: QueuedMessage | None
    duplicate: bool = False
    duplicate_of: MessageKey | None = None


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What merging a phone JID's queue into its LID's did."""

    # The phone JID had messages (in memory or persisted) before: the bot knew the
    # person by it, so it must be told the person's id changed.
    had_history: bool
    # Not yet persisted messages that moved, old key → new key (their writers wait on
    # the new one now).
    moved: dict[MessageKey, MessageKey] = field(default_factory=dict)
    # Window entries the limits evicted after the merge.
    evicted: int = 0


# Copies a queue entry under a new id as the person's (identity.moved_entry).
EntryCopy = Callable[[QueuedMessage, int], QueuedMessage]


class BotQueues:
    """One bot's queues. Ready messages enter the backlog once; eviction never touches it."""

    def __init__(
        self,
        bot_id: str,
        provider_name: str,
        limits: QueueLimits,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bot_id = bot_id
        self.provider_name = provider_name
        self.limits = limits
        self._clock = clock
        self._queues: dict[str, CorrespondentQueue] = {}
        self._seeds: dict[str, int] = {}
        self._backlog: deque[ReadyMessage] = deque()
        # Provider ids of ready messages not yet in `queues`: unbounded (at most the
        # backlog and the batch being written), because nothing else could recognise a
        # resend of them. Once durable an id moves to the bounded `_persisted` memory.
        self._pending_pids: dict[str, MessageKey] = {}
        self._persisted: OrderedDict[str, None] = OrderedDict()
        self._dedup_capacity = dedup_capacity
        # Provider ids and media ids of live placeholders: unbounded, because a
        # placeholder's provider id is in neither `queues` nor the bounded memory.
        self._placeholder_pids: dict[str, tuple[str, str]] = {}
        self._media: dict[str, str] = {}
        self._resolved_media: OrderedDict[str, str] = OrderedDict()
        # Which phone JIDs are kept under a LID (one person, one correspondent).
        self.identities = IdentityMap()

    # -- queues --------------------------------------------------------------------

    def seed_next_ids(self, max_ids: Mapping[str, int]) -> None:
        """From the store's highest persisted id per correspondent (next = max + 1)."""
        for correspondent_id, max_id in max_ids.items():
            self._seeds[correspondent_id] = max_id + 1
            queue = self._queues.get(correspondent_id)
            if queue is not None:
                queue.seed_next_id(max_id + 1)

    def queue(self, correspondent_id: str) -> CorrespondentQueue:
        queue = self._queues.get(correspondent_id)
        if queue is None:
            queue = CorrespondentQueue(
                self.limits, self._seeds.pop(correspondent_id, 1), self._clock
            )
            self._queues[correspondent_id] = queue
        return queue

    def existing_queue(self, correspondent_id: str) -> CorrespondentQueue | None:
        return self._queues.get(correspondent_id)

    def queues(self) -> Iterable[tuple[str, CorrespondentQueue]]:
        return self._queues.items()

    def has_history(self, correspondent_id: str) -> bool:
        """Whether the bot has had any message under this id (here or in `queues`)."""
        queue = self._queues.get(correspondent_id)
        if queue is not None and (queue.next_id > 1 or queue.placeholder_count):
            return True
        return correspondent_id in self._seeds

    def merge(self, phone_jid: str, lid: str, copy: EntryCopy) -> MergeOutcome:
        """The phone JID's queue taken into the LID's: its window entries and
        placeholders and its not yet persisted messages, all renumbered after both
        queues' ids in their original order; the LID's next id continues above both.
        Messages persisted under the phone JID stay there. Idempotent: a second merge
        finds nothing left to move."""
        had_history = self.has_history(phone_jid)
        source = self._queues.pop(phone_jid, None)
        seed = self._seeds.pop(phone_jid, None)
        pending = [r for r in self._backlog if r.correspondent_id == phone_jid]
        if source is None and not pending:
            # Nothing in memory (StartBot applies every known pair): no queue is created
            # for the LID, only its first id raised above the phone JID's persisted ones.
            if seed is not None:
                existing = self._queues.get(lid)
                if existing is not None:
                    existing.seed_next_id(seed)
                else:
                    self._seeds[lid] = max(self._seeds.get(lid, 1), seed)
            return MergeOutcome(had_history)
        target = self.queue(lid)
        if seed is not None:
            target.seed_next_id(seed)
        old_ids = {r.message.id for r in pending}
        if source is not None:
            target.seed_next_id(source.next_id)
            old_ids.update(source.ids())
        start = target.next_id
        new_ids = {old: start + i for i, old in enumerate(sorted(old_ids))}
        evicted = target.absorb(source, new_ids, copy) if source is not None else []
        target.seed_next_id(start + len(new_ids))
        moved: dict[MessageKey, MessageKey] = {}
        if pending:
            backlog: deque[ReadyMessage] = deque()
            for ready in self._backlog:
                if ready.correspondent_id != phone_jid:
                    backlog.append(ready)
                    continue
                entry = copy(ready.message, new_ids[ready.message.id])
                key = moved[ready.key] = MessageKey(lid, entry.id)
                backlog.append(ReadyMessage(lid, entry))
                pid = entry.provider_message_id
                if pid and pid in self._pending_pids:
                    self._pending_pids[pid] = key
            self._backlog = backlog
        for media_processing_id, owner in self._media.items():
            if owner == phone_jid:
                self._media[media_processing_id] = lid
        for pid, (owner, media_processing_id) in self._placeholder_pids.items():
            if owner == phone_jid:
                self._placeholder_pids[pid] = (lid, media_processing_id)
        for media_processing_id, owner in self._resolved_media.items():
            if owner == phone_jid:
                self._resolved_media[media_processing_id] = lid
        return MergeOutcome(had_history, moved, len(evicted))

    # -- dedup ---------------------------------------------------------------------

    def lookup_provider_id(self, provider_message_id: str) -> tuple[bool, MessageKey | None]:
        """(known, key): known when this bot already accepted that WhatsApp message."""
        if not provider_message_id:
            return False, None
        placeholder = self._placeholder_pids.get(provider_message_id)
        if placeholder is not None:
            correspondent_id, media_id = placeholder
            entry = self._queues[correspondent_id].placeholder(media_id)
            assert entry is not None
            return True, MessageKey(correspondent_id, entry.id)
        pending = self._pending_pids.get(provider_message_id)
        if pending is not None:
            return True, pending
        if provider_message_id in self._persisted:
            self._persisted.move_to_end(provider_message_id)
            return True, None
        return False, None

    def remember_persisted(self, provider_message_ids: Iterable[str]) -> None:
        """Provider ids known to be in `queues` (the store said so, or we wrote them)."""
        for pid in provider_message_ids:
            if not pid:
                continue
            self._persisted[pid] = None
            self._persisted.move_to_end(pid)
        while len(self._persisted) > self._dedup_capacity:
            self._persisted.popitem(last=False)

    def mark_durable(self, written: Iterable[ReadyMessage]) -> None:
        """Ingestion wrote these to `queues`: their ids leave the unbounded memory."""
        durable = [
            r.message.provider_message_id
            for r in written
            if self._pending_pids.pop(r.message.provider_message_id, None) is not None
        ]
        self.remember_persisted(durable)

    def _remember_pending(self, provider_message_id: str, key: MessageKey) -> None:
        if provider_message_id:
            self._pending_pids[provider_message_id] = key

    # -- operations ----------------------------------------------------------------

    def add(self, correspondent_id: str, message: NewMessage) -> AddOutcome:
        """AddMessage within the bot: dedup by provider id, append, enter the backlog."""
        known, key = self.lookup_provider_id(message.provider_message_id)
        if known:
            return AddOutcome(None, True, key)
        entry, _evicted = self.queue(correspondent_id).append(message)
        self._backlog.append(ReadyMessage(correspondent_id, entry))
        self._remember_pending(message.provider_message_id, MessageKey(correspondent_id, entry.id))
        return AddOutcome(entry)

    def restore_history(
        self, correspondent_id: str, history: Sequence[tuple[QueuedMessage, float]]
    ) -> int:
        """Persisted messages back into a window (StartBot); how many the limits kept.

        Never in the backlog (they are in `queues`), never emitted; their provider ids
        count as seen, so a resent frame is a duplicate without a store query.
        """
        if not history:
            return 0
        restored, evicted = self.queue(correspondent_id).restore(history)
        self.remember_persisted(entry.provider_message_id for entry, _age in history)
        gone = {id(e) for e in evicted}
        return sum(1 for e in restored if id(e) not in gone)

    def reserve_id(self, correspondent_id: str) -> int:
        return self.queue(correspondent_id).reserve_id()

    def find_media(self, media_processing_id: str) -> tuple[str, int] | None:
        """(correspondent, message id) of a live or recently resolved placeholder."""
        correspondent_id = self._media.get(media_processing_id) or self._resolved_media.get(
            media_processing_id
        )
        if correspondent_id is None:
            return None
        queue = self._queues[correspondent_id]
        entry = queue.placeholder(media_processing_id)
        if entry is not None:
            return correspondent_id, entry.id
        resolved = queue.resolved_id(media_processing_id)
        if resolved is not None:
            return correspondent_id, resolved
        return None

    def inject_placeholder(
        self,
        correspondent_id: str,
        message: NewMessage,
        media: MediaInfo,
        media_processing_id: str,
        message_id: int | None = None,
    ) -> tuple[QueuedMessage, bool]:
        entry, created = self.queue(correspondent_id).inject_placeholder(
            message, media, media_processing_id, message_id
        )
        if created:
            self._media[media_processing_id] = correspondent_id
            if message.provider_message_id:
                self._placeholder_pids[message.provider_message_id] = (
                    correspondent_id,
                    media_processing_id,
                )
        return entry, created

    def resolve(
        self,
        correspondent_id: str,
        media_processing_id: str,
        content: str,
        media_result: str | None = None,
    ) -> ResolveOutcome:
        """UpdateByMediaId within the bot; a newly ready message enters the backlog."""
        queue = self._queues.get(correspondent_id)
        if queue is None:
            return ResolveOutcome(UpdateStatus.NOT_FOUND)
        outcome, _evicted = queue.resolve(media_processing_id, content, media_result)
        entry = outcome.entry
        if entry is not None:
            self._backlog.append(ReadyMessage(correspondent_id, entry))
            del self._media[media_processing_id]
            self._resolved_media[media_processing_id] = correspondent_id
            while len(self._resolved_media) > RESOLVED_MEDIA_CAPACITY:
                self._resolved_media.popitem(last=False)
            if entry.provider_message_id:
                self._placeholder_pids.pop(entry.provider_message_id, None)
                self._remember_pending(
                    entry.provider_message_id, MessageKey(correspondent_id, entry.id)
                )
        return outcome

    # -- persistence backlog -------------------------------------------------------

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    def pop_ready(self, limit: int) -> list[ReadyMessage]:
        """PopReady: the oldest not-yet-persisted ready messages; never a placeholder."""
        taken: list[ReadyMessage] = []
        while self._backlog and len(taken) < limit:
            taken.append(self._backlog.popleft())
        return taken

    def restore_ready(self, taken: list[ReadyMessage]) -> None:
        """Puts popped messages back at the front, in order (their write failed)."""
        self._backlog.extendleft(reversed(taken))

    # -- metrics -------------------------------------------------------------------

    def placeholder_count(self) -> int:
        return sum(q.placeholder_count for q in self._queues.values())

    def counted_count(self) -> int:
        return sum(q.counted_count for q in self._queues.values())

    def oldest_placeholder_placed_at(self) -> float | None:
        oldest = [q.oldest_placeholder_placed_at() for q in self._queues.values()]
        return min((t for t in oldest if t is not None), default=None)
