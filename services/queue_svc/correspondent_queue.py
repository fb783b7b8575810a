"""One chat's window of messages, with placeholders for media still being processed.

SPEC section 3. Entries live in two structures: the counted (ready) messages in the
order they became ready, and the placeholders keyed by media id. Limits, eviction and
the character total only ever look at the first, so their cost is independent of how
many placeholders are waiting, and a placeholder cannot be evicted by construction.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from services.common.errors import InvalidInputError
from services.common.render import reply_prefix
from services.common.truncation import truncate_marked
from services.queue_svc.messages import (
    MediaInfo,
    NewMessage,
    QueuedMessage,
    QueueLimits,
    with_media_result,
)

Clock = Callable[[], float]

# Media ids resolved recently, so a repeated UpdateByMediaId is answered UPDATED without
# a second emission. Media workers repeat within seconds; this covers far more.
RESOLVED_MEMORY = 1024


class UpdateStatus(Enum):
    UPDATED = "updated"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class ResolveOutcome:
    status: UpdateStatus
    # The resolved entry (UPDATED); None when NOT_FOUND.
    message_id: int | None = None
    # True only for the call that actually resolved it (and must emit it).
    entry: QueuedMessage | None = None


class CorrespondentQueue:
    """The window of one (bot, correspondent). Plain Python; not thread-safe."""

    def __init__(
        self, limits: QueueLimits, next_id: int = 1, clock: Clock = time.monotonic
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._next_id = next_id
        self._counted: OrderedDict[int, QueuedMessage] = OrderedDict()
        self._placeholders: dict[str, QueuedMessage] = {}
        self._placeholder_ids: set[int] = set()
        self._resolved: OrderedDict[str, int] = OrderedDict()
        self._total_characters = 0

    # -- reads ---------------------------------------------------------------------

    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def total_characters(self) -> int:
        """Sum of message_size over counted (non-placeholder) messages."""
        return self._total_characters

    @property
    def counted_count(self) -> int:
        return len(self._counted)

    @property
    def placeholder_count(self) -> int:
        return len(self._placeholders)

    def counted(self) -> list[QueuedMessage]:
        """Counted messages, oldest first in eviction order."""
        return list(self._counted.values())

    def placeholders(self) -> list[QueuedMessage]:
        return list(self._placeholders.values())

    def placeholder(self, media_processing_id: str) -> QueuedMessage | None:
        return self._placeholders.get(media_processing_id)

    def resolved_id(self, media_processing_id: str) -> int | None:
        return self._resolved.get(media_processing_id)

    def window(self) -> list[QueuedMessage]:
        """Everything in the window, placeholders included, in id order."""
        entries = itertools.chain(self._counted.values(), self._placeholders.values())
        return sorted(entries, key=lambda e: e.id)

    def oldest_placeholder_placed_at(self) -> float | None:
        return min((p.placed_at for p in self._placeholders.values()), default=None)

    # -- writes --------------------------------------------------------------------

    def seed_next_id(self, next_id: int) -> None:
        """Never moves backwards: ids already handed out stay unique."""
        self._next_id = max(self._next_id, next_id)

    def reserve_id(self) -> int:
        """Hands out the next id without appending (the job is recorded first)."""
        assigned = self._next_id
        self._next_id += 1
        return assigned

    def append(self, message: NewMessage) -> tuple[QueuedMessage, list[QueuedMessage]]:
        """AddMessage: next id, truncation, append, limits. Returns (entry, evicted).

        Emission is the caller's job, done once when the entry is persisted.
        """
        content = truncate_marked(message.content, self._limits.max_message_characters)
        now = self._clock()
        entry = QueuedMessage(
            id=self.reserve_id(),
            content=content,
            sender=message.sender,
            source=message.source,
            originating_time=message.originating_time,
            provider_message_id=message.provider_message_id,
            message_size=len(content),
            group_id=message.group_id,
            group_name=message.group_name,
            details=message.details,
            ready_at=now,
        )
        self._count(entry)
        return entry, self.enforce_limits()

    def inject_placeholder(
        self,
        message: NewMessage,
        media: MediaInfo,
        media_processing_id: str,
        message_id: int | None = None,
    ) -> tuple[QueuedMessage, bool]:
        """Appends a placeholder: a new id, or during recovery the job's original id.

        Never truncates (the caption is kept whole), never emits, never counts.
        Returns (entry, created); a known media id returns the existing entry unchanged.
        """
        existing = self._placeholders.get(media_processing_id)
        if existing is not None:
            return existing, False
        if message_id is None:
            message_id = self.reserve_id()
        elif message_id in self._counted or message_id in self._placeholder_ids:
            raise InvalidInputError(
                f"message id {message_id} is already used in this queue by another message"
            )
        entry = QueuedMessage(
            id=message_id,
            content=message.content,
            sender=message.sender,
            source=message.source,
            originating_time=message.originating_time,
            provider_message_id=message.provider_message_id,
            message_size=len(message.content),
            group_id=message.group_id,
            group_name=message.group_name,
            media_processing_id=media_processing_id,
            mime_type=media.mime_type,
            original_filename=media.original_filename,
            media_kind=media.media_kind,
            details=message.details,
            placed_at=self._clock(),
        )
        self._placeholders[media_processing_id] = entry
        self._placeholder_ids.add(message_id)
        # P7: ids handed out later must stay above every re-injected placeholder.
        self._next_id = max(self._next_id, message_id + 1)
        return entry, True

    def resolve(
        self, media_processing_id: str, content: str, media_result: str | None = None
    ) -> tuple[ResolveOutcome, list[QueuedMessage]]:
        """UpdateByMediaId: the placeholder becomes a ready, counted message; its typed
        fields gain `media_result` (MediaResult JSON) when given.

        Returns the outcome and the messages evicted by re-applying the limits. A repeat
        for a recently resolved id is UPDATED with no entry (nothing to emit again).
        """
        entry = self._placeholders.pop(media_processing_id, None)
        if entry is None:
            known = self._resolved.get(media_processing_id)
            if known is not None:
                return ResolveOutcome(UpdateStatus.UPDATED, known), []
            return ResolveOutcome(UpdateStatus.NOT_FOUND), []
        self._placeholder_ids.discard(entry.id)
        content = truncate_marked(
            reply_prefix(entry.details) + content, self._limits.max_message_characters
        )
        entry.content = content
        if media_result is not None:
            entry.details = with_media_result(entry.details, media_result)
        entry.message_size = len(content)
        entry.media_processing_id = None
        entry.ready_at = self._clock()
        # The placeholder's old size (its caption) was never part of the total, so the
        # counted total changes by exactly the new size.
        self._count(entry)
        self._resolved[media_processing_id] = entry.id
        if len(self._resolved) > RESOLVED_MEMORY:
            self._resolved.popitem(last=False)
        return ResolveOutcome(UpdateStatus.UPDATED, entry.id, entry), self.enforce_limits()

    def restore(
        self, history: Sequence[tuple[QueuedMessage, float]]
    ) -> tuple[list[QueuedMessage], list[QueuedMessage]]:
        """Puts persisted messages back after a restart: (message, age in seconds) pairs.

        They were counted before anything counted since, so they go ahead of it in
        eviction order, in id order; each one's age (from its originating_time) sets
        `ready_at`, clamped so the order stays oldest first, which the head-only age
        check in `enforce_limits` relies on. Ids already in use (a placeholder
        re-injected under the same id) are skipped. Nothing here emits or enters a
        backlog: these messages are in `queues` already. Returns (restored, evicted).
        """
        now = self._clock()
        ceiling = next(iter(self._counted.values())).ready_at if self._counted else now
        restored: OrderedDict[int, QueuedMessage] = OrderedDict()
        floor = -math.inf
        for entry, age in sorted(history, key=lambda pair: pair[0].id):
            if (
                entry.is_placeholder
                or entry.id in self._counted
                or entry.id in self._placeholder_ids
                or entry.id in restored
            ):
                continue
            entry.ready_at = floor = min(ceiling, max(floor, now - max(0.0, age)))
            restored[entry.id] = entry
            self._total_characters += entry.message_size
            self._next_id = max(self._next_id, entry.id + 1)
        if not restored:
            return [], []
        kept = list(restored.values())
        restored.update(self._counted)
        self._counted = restored
        return kept, self.enforce_limits()

    def absorb(
        self,
        other: CorrespondentQueue,
        new_ids: Mapping[int, int],
        copy: Callable[[QueuedMessage, int], QueuedMessage],
    ) -> list[QueuedMessage]:
        """Takes in every entry of `other` (the same person under another id): each one
        as `copy(entry, new_ids[entry.id])`, so entries other readers still hold (a
        subscriber's buffer, the persistence backlog) never change under them.

        Counted entries join the eviction order by the time they became ready (both
        orders are oldest first, so the head-only age check stays right); placeholders
        stay uncounted; the character total grows by exactly `other`'s; ids handed out
        later stay above every id taken in. Returns what the limits then evict.
        """
        moved = [copy(e, new_ids[e.id]) for e in other._counted.values()]
        merged = heapq.merge(self._counted.values(), moved, key=lambda e: e.ready_at)
        counted: OrderedDict[int, QueuedMessage] = OrderedDict()
        for entry in merged:
            if entry.id in counted or entry.id in self._placeholder_ids:
                raise InvalidInputError(f"message id {entry.id} is used twice in the merge")
            counted[entry.id] = entry
        self._counted = counted
        self._total_characters += other._total_characters
        for media_processing_id, placeholder in other._placeholders.items():
            entry = copy(placeholder, new_ids[placeholder.id])
            if entry.id in counted or entry.id in self._placeholder_ids:
                raise InvalidInputError(f"message id {entry.id} is used twice in the merge")
            self._placeholders[media_processing_id] = entry
            self._placeholder_ids.add(entry.id)
        # A repeated UpdateByMediaId of a media the other queue resolved stays UPDATED.
        self._resolved.update(other._resolved)
        while len(self._resolved) > RESOLVED_MEMORY:
            self._resolved.popitem(last=False)
        self._next_id = max(self._next_id, other._next_id, *(i + 1 for i in new_ids.values()))
        return self.enforce_limits()

    def ids(self) -> list[int]:
        """Every id in the window (counted and placeholders)."""
        return [*self._counted, *self._placeholder_ids]

    def enforce_limits(self) -> list[QueuedMessage]:
        """Evicts the oldest counted messages until the counted subset is within limits.

        Each step is O(1) (the head of the counted order); placeholders are not in that
        structure, so a queue of placeholders only evicts nothing at no cost.
        """
        limits = self._limits
        cutoff = self._clock() - limits.max_age_seconds
        evicted: list[QueuedMessage] = []
        counted = self._counted
        while counted:
            head = next(iter(counted.values()))
            if (
                len(counted) <= limits.max_messages
                and self._total_characters <= limits.max_characters
                and head.ready_at >= cutoff
            ):
                break
            counted.popitem(last=False)
            self._total_characters -= head.message_size
            evicted.append(head)
        return evicted

    def _count(self, entry: QueuedMessage) -> None:
        self._counted[entry.id] = entry
        self._total_characters += entry.message_size
