"""The message aggregate's value types: what `queues` holds and what a write reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from services.common.errors import InvalidInputError
from services.common.store._types import require_json_object, to_millis
from services.common.vocabulary import MESSAGE_SOURCES


@dataclass(slots=True)
class MessageFields:
    """The fields a stored message (`StoredMessage`) and a queue entry (queue_svc's
    `QueuedMessage`) share, declared once; `message_fields` copies them across.

    Not frozen: a dataclass cannot mix frozen and mutable classes in one hierarchy, and
    a queue entry changes when its placeholder resolves (tests hold the entry and see
    it change); a frozen entry would cost its __init__ about 2.4 µs more per message.
    """

    id: int
    content: str
    sender: str
    source: str
    originating_time: datetime
    provider_message_id: str
    message_size: int
    group_id: str | None = None
    group_name: str | None = None
    mime_type: str | None = None
    original_filename: str | None = None
    media_kind: str | None = None
    # Structured content of a non-text, non-media message and its reply context, as
    # the JSON text queue_svc wrote (absent for plain text and media).
    details: str | None = None


SHARED_MESSAGE_FIELDS: tuple[str, ...] = tuple(MessageFields.__dataclass_fields__)


_shared_values = attrgetter(*SHARED_MESSAGE_FIELDS)


def message_fields(message: MessageFields) -> tuple[Any, ...]:
    """The shared fields of `message` in declaration order: the leading positional
    arguments of either message type (one attrgetter call: a restart converts every
    message of a bot's windows)."""
    values: tuple[Any, ...] = _shared_values(message)
    return values


@dataclass(slots=True, kw_only=True)
class StoredMessage(MessageFields):
    """One ready message persisted in `queues`; placeholders never become one.

    Read-only by convention (see `MessageFields` for why it is not frozen): the store
    and its readers never assign to one; a changed message is a new StoredMessage.
    """

    bot_id: str
    provider_name: str
    correspondent_id: str
    # The bot's delivery sequence: assigned by the store when the row is inserted
    # (strictly increasing per bot, gaps allowed); None on a message not stored yet.
    sequence: int | None = None

    def __post_init__(self) -> None:
        for name in ("bot_id", "provider_name", "correspondent_id"):
            if not getattr(self, name):
                raise InvalidInputError(f"stored message: {name} must not be empty")
        if self.sequence is not None and (
            isinstance(self.sequence, bool) or not isinstance(self.sequence, int)
        ):
            raise InvalidInputError(
                f"stored message: sequence must be an integer, got {self.sequence!r}"
            )
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 0:
            raise InvalidInputError(f"stored message: id must be an integer >= 0, got {self.id!r}")
        if self.source not in MESSAGE_SOURCES:
            raise InvalidInputError(
                f"stored message: source must be one of {sorted(MESSAGE_SOURCES)},"
                f" got {self.source!r}"
            )
        to_millis(self.originating_time, "stored message: originating_time")
        if self.details is not None:
            require_json_object(self.details, "stored message: details")


MESSAGE_FIELDS: tuple[str, ...] = tuple(StoredMessage.__dataclass_fields__)
# What a writer supplies; the store adds `sequence`.
MESSAGE_INPUT_FIELDS: tuple[str, ...] = tuple(f for f in MESSAGE_FIELDS if f != "sequence")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What `append_messages` did: the sequence of every message, in input order (the
    existing row's sequence for one that was already stored), and how many were new."""

    sequences: list[int]
    inserted: int
