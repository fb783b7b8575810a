"""Value types the store reads and writes; adapters translate them to rows/documents."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from services.common.errors import InvalidInputError
from services.common.validation import is_uuid4

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(value: datetime, what: str = "datetime") -> int:
    """UTC milliseconds since the epoch; both adapters keep BSON's millisecond precision."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    return (value - _EPOCH) // _MILLISECOND


def require_json_object(value: str, what: str) -> None:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what} must be JSON text: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got {type(parsed).__name__}")


# queue_svc's registry of active bots (resumed after a restart): one pseudo document in
# `bot_configurations` whose `active_bots` lists the bot ids. Every queue_svc shard
# updates it, so the adapters change one id at a time, atomically (set_bot_active).
ACTIVE_BOTS_DOCUMENT_ID = "_queueSvcActiveBots"
ACTIVE_BOTS_FIELD = "active_bots"
# The processor definitions (common/routing.py reads them): another pseudo document of
# `bot_configurations`.
DEFINITIONS_DOCUMENT_ID = "_mediaProcessorDefinitions"


def listed_bots(value: object) -> list[str]:
    """The registry's bot ids, sorted; anything that is not a non-empty string is ignored."""
    if not isinstance(value, list):
        return []
    return sorted({b for b in value if isinstance(b, str) and b})


def from_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def truncate_to_millis(value: datetime) -> datetime:
    """What a datetime reads back as after a round trip through either adapter."""
    return from_millis(to_millis(value))


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"


class CheckpointOutcome(StrEnum):
    """What `checkpoint_job` did with a running job's saved progress."""

    # Saved; the job is still this worker's to continue.
    KEPT = "kept"
    # Saved, and the job went back to pending for a cheaper job of its pool to go first.
    YIELDED = "yielded"
    # Nothing saved: the claim is no longer this worker's (lease lost, job moved).
    LOST = "lost"


class JobCollection(StrEnum):
    """Where a job document lives: active (claimable), holding (bot stopped), failed."""

    ACTIVE = "active"
    HOLDING = "holding"
    FAILED = "failed"

    @property
    def collection_name(self) -> str:
        """The MongoDB collection / SQLite table holding this set of jobs."""
        return _COLLECTION_NAMES[self]


_COLLECTION_NAMES = {
    JobCollection.ACTIVE: "media_processing_jobs",
    JobCollection.HOLDING: "media_processing_jobs_holding",
    JobCollection.FAILED: "media_processing_jobs_failed",
}


def _positive_int(doc: Mapping[str, Any], key: str, default: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(
            f"bot configuration: {key} must be a positive integer, got {value!r}"
        )
    return value


# What reaches the bot (the Node server applies them; whatsapp_baileys_server/README.md):
# group chats, status updates, channel posts, the owner's own phone messages (human
# takeover), group system events.
MESSAGE_SETTING_DEFAULTS: Mapping[str, bool] = MappingProxyType(
    {
        "groups": True,
        "status": False,
        "newsletters": False,
        "owner_messages": True,
        "group_events": False,
    }
)

_BOT_CONFIG_KEYS = frozenset(
    {
        "_id",
        "bot_id",
        "provider_name",
        "max_messages",
        "max_characters",
        "max_age_seconds",
        "max_message_characters",
        "media_storage_quota_gb",
        "webhook_url",
        "webhook_secret",
        "webhook_since_sequence",
        *MESSAGE_SETTING_DEFAULTS,
    }
)
# A webhook secret shorter than this is refused: it keys the HMAC of every delivery.
WEBHOOK_SECRET_MIN_CHARS = 16
# A bot's limits when its document does not set them (queue_svc's QueueLimits too).
DEFAULT_PROVIDER_NAME = "whatsapp_baileys"
DEFAULT_MAX_MESSAGES = 200
DEFAULT_MAX_CHARACTERS = 50_000
DEFAULT_MAX_AGE_SECONDS = 7 * 86400
DEFAULT_MAX_MESSAGE_CHARACTERS = 8_000
DEFAULT_MEDIA_STORAGE_QUOTA_GB = 1.0
_LIMIT_DEFAULTS = (
    ("max_messages", DEFAULT_MAX_MESSAGES),
    ("max_characters", DEFAULT_MAX_CHARACTERS),
    ("max_age_seconds", DEFAULT_MAX_AGE_SECONDS),
    ("max_message_characters", DEFAULT_MAX_MESSAGE_CHARACTERS),
)


@dataclass(frozen=True, slots=True)
class BotConfig:
    """One bot's document in `bot_configurations` (keyed by bot id)."""

    bot_id: str
    provider_name: str = DEFAULT_PROVIDER_NAME
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_characters: int = DEFAULT_MAX_CHARACTERS
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    # Truncation bound for one message's content.
    max_message_characters: int = DEFAULT_MAX_MESSAGE_CHARACTERS
    media_storage_quota_gb: float = DEFAULT_MEDIA_STORAGE_QUOTA_GB
    # Where the webhook relay POSTs this bot's messages (http or https), and the key of
    # their HMAC-SHA256 signature; both absent when the bot has no webhook.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # The relay delivers the messages after this delivery sequence to a bot it has no
    # cursor for yet; the gateway sets it to the bot's last sequence when the webhook is
    # first configured (0 = the whole history).
    webhook_since_sequence: int | None = None
    # Which messages reach the bot; see MESSAGE_SETTING_DEFAULTS.
    groups: bool = MESSAGE_SETTING_DEFAULTS["groups"]
    status: bool = MESSAGE_SETTING_DEFAULTS["status"]
    newsletters: bool = MESSAGE_SETTING_DEFAULTS["newsletters"]
    owner_messages: bool = MESSAGE_SETTING_DEFAULTS["owner_messages"]
    group_events: bool = MESSAGE_SETTING_DEFAULTS["group_events"]
    # Every other key of the document, kept so a read-modify-write loses nothing.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Re-validates through the same rules as a stored document.
        BotConfig._check(self.to_document())

    @staticmethod
    def _check(doc: Mapping[str, Any]) -> None:
        bot_id = doc.get("bot_id", doc.get("_id"))
        if not isinstance(bot_id, str) or not bot_id:
            raise InvalidInputError(
                f"bot configuration: bot_id must be a non-empty string, got {bot_id!r}"
            )
        provider = doc.get("provider_name", DEFAULT_PROVIDER_NAME)
        if not isinstance(provider, str) or not provider:
            raise InvalidInputError(
                f"bot configuration: provider_name must be a non-empty string, got {provider!r}"
            )
        for key, default in _LIMIT_DEFAULTS:
            _positive_int(doc, key, default)
        quota = doc.get("media_storage_quota_gb", DEFAULT_MEDIA_STORAGE_QUOTA_GB)
        if isinstance(quota, bool) or not isinstance(quota, int | float) or not quota >= 0:
            raise InvalidInputError(
                f"bot configuration: media_storage_quota_gb must be a number >= 0, got {quota!r}"
            )
        _check_webhook(doc.get("webhook_url"), doc.get("webhook_secret"))
        for key, default in MESSAGE_SETTING_DEFAULTS.items():
            flag = doc.get(key, default)
            if not isinstance(flag, bool):
                raise InvalidInputError(
                    f"bot configuration: {key} must be true or false, got {flag!r}"
                )
        if not isinstance(doc.get("read_receipts", False), bool):
            raise InvalidInputError("bot configuration: read_receipts must be true or false")
        _check_transcription(doc.get("transcription"))
        since = doc.get("webhook_since_sequence")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or since < 0
        ):
            raise InvalidInputError(
                f"bot configuration: webhook_since_sequence must be an integer >= 0, got {since!r}"
            )

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> BotConfig:
        cls._check(doc)
        bot_id = doc.get("bot_id", doc.get("_id"))
        assert isinstance(bot_id, str)
        return cls(
            bot_id=bot_id,
            provider_name=doc.get("provider_name", DEFAULT_PROVIDER_NAME),
            **{key: doc.get(key, default) for key, default in _LIMIT_DEFAULTS},
            media_storage_quota_gb=float(
                doc.get("media_storage_quota_gb", DEFAULT_MEDIA_STORAGE_QUOTA_GB)
            ),
            webhook_url=doc.get("webhook_url"),
            webhook_secret=doc.get("webhook_secret"),
            webhook_since_sequence=doc.get("webhook_since_sequence"),
            **{key: doc.get(key, default) for key, default in MESSAGE_SETTING_DEFAULTS.items()},
            extra={k: v for k, v in doc.items() if k not in _BOT_CONFIG_KEYS},
        )

    def to_document(self) -> dict[str, Any]:
        """The stored form without `_id`; adapters key it by `bot_id`."""
        clash = _BOT_CONFIG_KEYS.intersection(self.extra)
        if clash:
            raise InvalidInputError(f"bot configuration: extra repeats known keys {sorted(clash)}")
        return {
            "bot_id": self.bot_id,
            "provider_name": self.provider_name,
            "max_messages": self.max_messages,
            "max_characters": self.max_characters,
            "max_age_seconds": self.max_age_seconds,
            "max_message_characters": self.max_message_characters,
            "media_storage_quota_gb": self.media_storage_quota_gb,
            **{
                key: value
                for key, value in (
                    ("webhook_url", self.webhook_url),
                    ("webhook_secret", self.webhook_secret),
                    ("webhook_since_sequence", self.webhook_since_sequence),
                )
                if value is not None
            },
            **self.message_settings(),
            **self.extra,
        }

    def message_settings(self) -> dict[str, bool]:
        """The settings that decide which messages reach the bot, as Node reads them."""
        return {
            "groups": self.groups,
            "status": self.status,
            "newsletters": self.newsletters,
            "owner_messages": self.owner_messages,
            "group_events": self.group_events,
        }


# The transcription engines a bot may ask its speech pools for (media_svc `inputs.py`).
TRANSCRIPTION_ENGINES = ("local", "remote")


def _check_transcription(value: object) -> None:
    """`{"engine": "local" | "remote"}` or absent (the pool decides)."""
    if value is None:
        return
    engine = value.get("engine") if isinstance(value, Mapping) else None
    if (
        not isinstance(value, Mapping)
        or set(value) - {"engine"}
        or (engine is not None and engine not in TRANSCRIPTION_ENGINES)
    ):
        raise InvalidInputError(
            'bot configuration: transcription must be {"engine": "local" | "remote"}, '
            f"got {value!r}"
        )


def _check_webhook(url: object, secret: object) -> None:
    if url is None:
        if secret is not None:
            raise InvalidInputError("bot configuration: webhook_secret is set without webhook_url")
        return
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) < 10:
        raise InvalidInputError(
            f"bot configuration: webhook_url must be an http:// or https:// URL, got {url!r}"
        )
    if not isinstance(secret, str) or len(secret) < WEBHOOK_SECRET_MIN_CHARS:
        raise InvalidInputError(
            "bot configuration: webhook_secret must be a string of at least"
            f" {WEBHOOK_SECRET_MIN_CHARS} characters when webhook_url is set"
        )


# A day: no estimate of one file's processing time is longer (the longest pool timeout).
MAX_CLAIM_DELAY_MS = 86_400_000
_MIB = 1 << 20


def claim_delay_for_size(file_size: int, seconds_per_mib: float) -> int:
    """A job's claim delay from its staged size and its pool's processing seconds per
    MiB (services/common/job_cost.py), capped: written once, so a job created in a pool
    and one re-routed to it are ordered alike."""
    delay = round(max(file_size, 0) / _MIB * seconds_per_mib * 1000)
    return min(delay, MAX_CLAIM_DELAY_MS)


@dataclass(frozen=True, slots=True)
class NewMediaJob:
    """Everything needed to process a media message and rebuild its placeholder."""

    media_processing_id: str
    bot_id: str
    provider_name: str
    correspondent_id: str
    message_id: int
    sender: str
    source: str
    originating_time: datetime
    provider_message_id: str
    caption: str
    mime_type: str
    media_kind: str
    original_filename: str | None
    file_size: int
    route: str
    pool: str
    has_staged_file: bool
    group_id: str | None = None
    group_name: str | None = None
    # Why Node could not stage the media (CORRUPT, OVER_QUOTA), e.g. "download failed:
    # HTTP 410 after re-upload". For operators only; never shown to the chat user.
    condition_detail: str | None = None
    # The message's details JSON (its reply context), so a placeholder rebuilt from the
    # job after a restart still says what it replied to.
    details: str | None = None
    # How much later than its arrival the job is ordered for claiming: its expected
    # processing time (services/common/job_cost.py). The store keeps `claim_at` = arrival +
    # this delay and claims the smallest: a long file is claimed as if it arrived later,
    # so short ones arriving meanwhile go first, and every job arriving after its
    # `claim_at` ranks behind it, so nothing starves.
    claim_delay_ms: int = 0

    def __post_init__(self) -> None:
        delay = self.claim_delay_ms
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int)
            or not 0 <= delay <= MAX_CLAIM_DELAY_MS
        ):
            raise InvalidInputError(
                f"media job: claim_delay_ms must be from 0 to {MAX_CLAIM_DELAY_MS},"
                f" got {self.claim_delay_ms!r}"
            )
        if self.details is not None:
            require_json_object(self.details, "media job: details")
        if not is_uuid4(self.media_processing_id):
            raise InvalidInputError(
                f"media job: media_processing_id must be a UUID4, got {self.media_processing_id!r}"
            )
        for name in ("bot_id", "provider_name", "correspondent_id", "route", "pool"):
            if not getattr(self, name):
                raise InvalidInputError(f"media job: {name} must not be empty")
        if self.message_id < 0 or self.file_size < 0:
            raise InvalidInputError("media job: message_id and file_size must be >= 0")
        to_millis(self.originating_time, "media job: originating_time")


# The job's fields are NewMediaJob's plus the processing state below; the state is
# keyword-only because the inherited fields end with defaults.
@dataclass(frozen=True, slots=True, kw_only=True)
class MediaJob(NewMediaJob):
    """A stored job: the NewMediaJob fields plus its processing state."""

    status: JobStatus
    # Claims in the current cycle (reset to 0 by requeue_failed_job); media_svc gives up
    # after MEDIA_MAX_ATTEMPTS of them.
    attempts: int
    # Claims ever made (never reset, kept through every move): the fencing token.
    fence: int
    claimed_by: str | None
    lease_expires_at: datetime | None
    # Not claimable before this instant (retry backoff).
    available_at: datetime
    result: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    failed_at: datetime | None
    # Claim order among the claimable jobs of a pool: created_at + claim_delay_ms (kept
    # through retries, moves and requeues; the retry backoff is `available_at`).
    claim_at: datetime
    # The values processing learned beside `result` (chatbot.common.v1.MediaResult as
    # proto3 JSON, e.g. a transcript's language); None when there are none.
    media_result: str | None
    # A processor's saved progress on a job done in parts (long audio transcribed chunk
    # by chunk: the text so far, where to go on, the language), opaque to the store;
    # None until the first part is saved. Kept through every move, so a crash or a
    # yield resumes from it and no part is done twice into the result.
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        """Read back from the store: checked once, as the NewMediaJob it was created from
        (a document written by an older release must still read)."""


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    job: MediaJob
    # The fencing token: the job's `fence` after this claim. Every later write must
    # present it; it never repeats, even after the job is requeued from failed.
    token: int


@dataclass(frozen=True, slots=True)
class PoolDepth:
    pending: int
    processing: int
    oldest_pending_created_at: datetime | None


NEW_JOB_FIELDS: tuple[str, ...] = tuple(NewMediaJob.__dataclass_fields__)
JOB_FIELDS: tuple[str, ...] = tuple(MediaJob.__dataclass_fields__)
