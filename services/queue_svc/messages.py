"""The values a correspondent queue holds: what writers supply and what the queue keeps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidInputError
from services.common.store import (
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_CHARACTERS,
    DEFAULT_MAX_MESSAGE_CHARACTERS,
    DEFAULT_MAX_MESSAGES,
    MessageFields,
)
from services.common.vocabulary import MESSAGE_SOURCES

# The key of the message context inside the details JSON (see convert.py).
CONTEXT_KEY = "context"
# The key of what processing learned from the media (MediaResult JSON), set when a
# placeholder resolves.
MEDIA_RESULT_KEY = "mediaResult"


def with_media_result(details: str | None, media_result: str) -> str:
    """The details JSON with the media result added (a resolved placeholder's)."""
    parts = json.loads(details) if details is not None else {}
    parts[MEDIA_RESULT_KEY] = json.loads(media_result)
    return json.dumps(parts, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a message's context says about whom it comes from (MessageContext's id kinds
    as their proto enum names, phone numbers as E.164 digits): the part queue_svc reads
    to keep one person in one queue (identity.py)."""

    correspondent_kind: str = "ID_KIND_UNSPECIFIED"
    correspondent_phone: str | None = None
    sender_kind: str = "ID_KIND_UNSPECIFIED"
    sender_phone: str | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as a writer supplies it; the queue assigns its id and size."""

    content: str
    sender: str
    source: str
    originating_time: datetime
    provider_message_id: str = ""
    group_id: str | None = None
    group_name: str | None = None
    # Structured content and reply context (canonical JSON, see convert.py), kept
    # opaque here: the queue stores and hands them on, it never reads them.
    details: str | None = None
    # Read from the context (also inside `details`); None when the message has none.
    identity: Identity | None = None

    def __post_init__(self) -> None:
        if self.source not in MESSAGE_SOURCES:
            raise InvalidInputError(
                f"message source must be one of {sorted(MESSAGE_SOURCES)}, got {self.source!r}"
            )
        if self.originating_time.tzinfo is None:
            raise InvalidInputError("originating_time must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media message carries besides its caption."""

    mime_type: str
    media_kind: str
    original_filename: str | None = None


@dataclass(slots=True)
class QueuedMessage(MessageFields):
    """One entry of a correspondent queue.

    Mutable only while it is a placeholder: resolving it sets the content and clears
    `media_processing_id`, after which nothing changes it again.
    """

    media_processing_id: str | None = None
    # Clock reading when the entry became counted (appended ready, or resolved); the
    # age limit and the eviction order both use it, so the oldest is always at the head.
    ready_at: float = 0.0
    # Clock reading when the placeholder was appended (placeholder age metric).
    placed_at: float = 0.0

    @property
    def is_placeholder(self) -> bool:
        return self.media_processing_id is not None


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Retention limits of one correspondent queue; placeholders never count."""

    max_messages: int = DEFAULT_MAX_MESSAGES
    max_characters: int = DEFAULT_MAX_CHARACTERS
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    # Truncation bound for one message's content (AddMessage and UpdateByMediaId).
    max_message_characters: int = DEFAULT_MAX_MESSAGE_CHARACTERS

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_characters", "max_age_seconds", "max_message_characters"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"queue limit {name} must be > 0")
