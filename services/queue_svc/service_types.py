"""QueueService's requests, results and errors, and how a store failure reaches callers.

Kept apart from the service so the servicer's translation (convert.py) and the
lifecycle, placeholder and ingestion modules share them without importing each other."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from services.common.errors import ChatbotError, PreconditionError, UnavailableError
from services.common.sharding import ShardIdentity
from services.common.vocabulary import MediaCondition
from services.queue_svc.bot_queues import DEFAULT_DEDUP_CAPACITY
from services.queue_svc.messages import MediaInfo, NewMessage, QueuedMessage

T = TypeVar("T")


class BotNotActiveError(PreconditionError):
    """The bot is not started (or is stopping). Maps to FAILED_PRECONDITION."""


class WrongShardError(PreconditionError):
    """The bot belongs to another queue_svc shard. Maps to FAILED_PRECONDITION."""


class AddStatus(Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    BOT_NOT_ACTIVE = "bot_not_active"


class UpdateResult(Enum):
    UPDATED = "updated"
    NOT_FOUND = "not_found"
    BOT_NOT_ACTIVE = "bot_not_active"


@dataclass(frozen=True, slots=True)
class AddItem:
    bot_id: str
    correspondent_id: str
    message: NewMessage


@dataclass(frozen=True, slots=True)
class AddResult:
    status: AddStatus
    id: int = 0


@dataclass(frozen=True, slots=True)
class MediaUpdate:
    """One UpdateByMediaIds item: a placeholder's processing result."""

    bot_id: str
    correspondent_id: str
    media_processing_id: str
    content: str
    media_result: str | None = None


@dataclass(frozen=True, slots=True)
class PlaceholderRequest:
    bot_id: str
    correspondent_id: str
    message: NewMessage
    media: MediaInfo
    media_processing_id: str
    condition: MediaCondition
    file_size: int = 0
    condition_detail: str | None = None


@dataclass(frozen=True, slots=True)
class StartResult:
    started: bool
    jobs_reactivated: int = 0
    placeholders_restored: int = 0
    results_applied: int = 0
    # Persisted messages put back into the windows (within the bot's limits).
    history_restored: int = 0


@dataclass(frozen=True, slots=True)
class StopResult:
    stopped: bool
    messages_persisted: int = 0
    jobs_parked: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    messages: list[QueuedMessage]
    total_characters: int
    next_id: int


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    batch_size: int = 1000
    linger_seconds: float = 0.0
    retry_seconds: float = 0.5
    write_timeout_seconds: float = 10.0
    subscriber_buffer: int = 10_000
    dedup_capacity: int = DEFAULT_DEDUP_CAPACITY
    definitions_refresh_seconds: float = 10.0
    resume_bots: bool = True
    # The bots this replica serves (services.common.sharding); 0/1 serves every bot.
    shard: ShardIdentity = field(default_factory=ShardIdentity)


async def store_call(call: Awaitable[T], what: str) -> T:
    """Store failures become UnavailableError (retry); our own errors pass through."""
    try:
        return await call
    except ChatbotError:
        raise
    except Exception as exc:
        raise UnavailableError(f"store unavailable ({what}): {exc}") from exc
