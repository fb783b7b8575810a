"""The bodies of the gateway's HTTP API as pydantic models: what each route accepts (the
handlers parse with these, openapi.py `read_body`) and what it answers (the published
document; the schemathesis test checks every answer against them). Rules a JSON Schema
cannot state (exactly one of media.url and media.base64, a bot id in the body equal to
the path's) stay in the domain code behind them, which answers 400 the same way."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.common.store._outbox_types import MAX_IDEMPOTENCY_KEY
from services.common.store._rules import AUTH_KEY_ID_MAX, AUTH_KIND_PATTERN, AUTH_VALUE_MAX
from services.common.store._types import (
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_CHARACTERS,
    DEFAULT_MAX_MESSAGE_CHARACTERS,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MEDIA_STORAGE_QUOTA_GB,
    DEFAULT_PROVIDER_NAME,
    MESSAGE_SETTING_DEFAULTS,
    WEBHOOK_SECRET_MIN_CHARS,
)

_STRICT = ConfigDict(strict=True, extra="forbid")
# Answers may grow fields without breaking a client that reads them.
_ANSWER = ConfigDict(extra="allow")

# A lease longer than this would keep a dead Node replica's bots unserved for too long.
MAX_TTL_SECONDS = 300.0
# Baileys asks for a few hundred keys at most at once (pre-keys after a pairing).
MAX_AUTH_IDS = 5000
# node_directory.py's MEMBER_PREFIX and SESSION_PREFIX: the only leases Node may take.
LEASE_NAME_PATTERN = r"^(node-member:|whatsapp-session:)"
# What pairing_api.py accepts once spaces, "+", "(", ")" and "-" are dropped: E.164
# without the plus (a country code not starting with 0, 7 to 15 digits).
PHONE_PATTERN = r"^[\s+()-]*[1-9]([\s+()-]*[0-9]){6,14}[\s+()-]*$"

AuthKind = Annotated[str, StringConstraints(pattern=AUTH_KIND_PATTERN)]
AuthKeyId = Annotated[str, StringConstraints(max_length=AUTH_KEY_ID_MAX)]
AuthValue = Annotated[str, StringConstraints(max_length=AUTH_VALUE_MAX)]


def _positive(default: int) -> Any:
    return Field(default=default, gt=0, le=2**63 - 1)


class Transcription(BaseModel):
    model_config = _STRICT
    engine: Literal["local", "remote"] | None = None


class BotConfigBody(BaseModel):
    """A bot's configuration (PUT replaces it; absent fields take their defaults). Other
    keys are kept as they are (the Node server and pools read some of them)."""

    model_config = ConfigDict(strict=True, extra="allow")
    bot_id: str | None = Field(
        default=None, min_length=1, description="The path's (absent or null: the same)."
    )
    provider_name: str = Field(default=DEFAULT_PROVIDER_NAME, min_length=1)
    max_messages: int = _positive(DEFAULT_MAX_MESSAGES)
    max_characters: int = _positive(DEFAULT_MAX_CHARACTERS)
    max_age_seconds: int = _positive(DEFAULT_MAX_AGE_SECONDS)
    max_message_characters: int = _positive(DEFAULT_MAX_MESSAGE_CHARACTERS)
    media_storage_quota_gb: float = Field(
        default=DEFAULT_MEDIA_STORAGE_QUOTA_GB, ge=0, allow_inf_nan=False
    )
    webhook_url: str | None = Field(
        default=None,
        min_length=10,
        pattern=r"^https?://",
        description="Where the relay POSTs the bot's messages; needs webhook_secret.",
    )
    webhook_secret: str | None = Field(
        default=None, min_length=WEBHOOK_SECRET_MIN_CHARS, description="The HMAC key."
    )
    webhook_since_sequence: int | None = Field(default=None, ge=0, le=2**63 - 1)
    groups: bool = MESSAGE_SETTING_DEFAULTS["groups"]
    status: bool = MESSAGE_SETTING_DEFAULTS["status"]
    newsletters: bool = MESSAGE_SETTING_DEFAULTS["newsletters"]
    owner_messages: bool = MESSAGE_SETTING_DEFAULTS["owner_messages"]
    group_events: bool = MESSAGE_SETTING_DEFAULTS["group_events"]
    read_receipts: bool = False
    transcription: Transcription | None = None


class BotConfigShown(BaseModel):
    """The stored configuration; the webhook secret shows as "(set)"."""

    model_config = _ANSWER
    bot_id: str
    provider_name: str
    max_messages: int
    max_characters: int
    max_age_seconds: int
    max_message_characters: int
    media_storage_quota_gb: float
    webhook_url: str | None = None
    webhook_secret: Literal["(set)"] | None = None
    webhook_since_sequence: int | None = None
    groups: bool
    status: bool
    newsletters: bool
    owner_messages: bool
    group_events: bool


class ConfigStored(BaseModel):
    """The configuration as stored."""

    model_config = _ANSWER
    bot_id: str
    config: BotConfigShown


class SessionSeen(BaseModel):
    model_config = _ANSWER
    state: str
    detail: str | None
    updated_at: str | None


class BotStatus(BaseModel):
    """The bot's configuration and the session state its Node server last reported."""

    model_config = _ANSWER
    bot_id: str
    config: BotConfigShown
    session: SessionSeen | None
    node_connections: int


class StartBody(BaseModel):
    model_config = _STRICT
    # The name Node's /initialize has always taken (and clients send).
    forceReinit: bool = Field(  # noqa: N815
        default=False, description="Drop the Node session and pair again (a new QR code)."
    )


class QueueStarted(BaseModel):
    model_config = _ANSWER
    started: bool
    jobs_reactivated: int
    placeholders_restored: int
    results_applied: int


class Started(BaseModel):
    """Started: the queue side, and Node's answer to /initialize (or its error, 502)."""

    model_config = _ANSWER
    bot_id: str
    queue: QueueStarted
    node: dict[str, Any]


class Stopped(BaseModel):
    """Stopped: messages persisted, media jobs parked until the next start."""

    model_config = _ANSWER
    bot_id: str
    stopped: bool
    messages_persisted: int
    jobs_parked: int


class MediaBody(BaseModel):
    """Exactly one of `url` (fetched by the gateway, SSRF-guarded) and `base64`."""

    model_config = _STRICT
    url: str | None = Field(default=None, min_length=1)
    base64: str | None = Field(default=None, min_length=1)
    mime_type: str | None = Field(default=None, min_length=1)
    filename: str | None = Field(default=None, min_length=1)


class OutgoingBody(BaseModel):
    """A message to send. The idempotency key is this field or the Idempotency-Key header."""

    model_config = _STRICT
    idempotency_key: str | None = Field(default=None, max_length=MAX_IDEMPOTENCY_KEY)
    type: Literal[
        "text", "image", "document", "audio", "voice_note", "video", "reaction", "read", "typing"
    ] = "text"
    correspondent_id: str = Field(min_length=1)
    text: str | None = None
    quoted_provider_message_id: str | None = None
    media: MediaBody | None = None
    emoji: str | None = Field(default=None, description='Reactions: "" removes one.')
    target_message_id: str | None = None


class OutgoingStatus(BaseModel):
    """The outgoing message as the outbox holds it."""

    model_config = _ANSWER
    bot_id: str
    idempotency_key: str
    correspondent_id: str
    type: str
    status: Literal["pending", "sent", "failed"]
    provider_message_id: str | None
    reason: str | None
    created_at: str
    updated_at: str


class OutgoingAccepted(OutgoingStatus):
    """Stored in the outbox (202), or the same key seen before (200)."""

    status_url: str


class NodeSession(BaseModel):
    """The WhatsApp session as the Node server holds it (its fields, passed through)."""

    model_config = _ANSWER


class PairingState(BaseModel):
    """The session state and, while a scan is awaited, the QR code's text."""

    model_config = _ANSWER
    bot_id: str
    state: Any = None
    qr: str | None
    qr_png: str | None = None


class PairingCodeBody(BaseModel):
    model_config = _STRICT
    phone_number: str = Field(
        max_length=40,
        pattern=PHONE_PATTERN,
        description="International format, e.g. 4915112345678 (spaces, +, -, () ignored).",
    )


class PairingCode(BaseModel):
    """A code to type on the phone (Linked devices → Link with phone number)."""

    model_config = _ANSWER
    bot_id: str
    code: str


class TokenBody(BaseModel):
    model_config = _STRICT
    label: str = Field(default="", max_length=200)


class TokenShown(BaseModel):
    model_config = _ANSWER
    token_id: str
    bot_id: str
    label: str
    created_at: str


class TokenIssued(TokenShown):
    """Issued: `token` is shown this once (only its hash is stored)."""

    token: str


class TokenList(BaseModel):
    """The bot's tokens, without their secrets."""

    model_config = _ANSWER
    bot_id: str
    tokens: list[TokenShown]


class TokenRevoked(BaseModel):
    """Revoked."""

    model_config = _ANSWER
    bot_id: str
    token_id: str
    revoked: bool


class DeadLetter(BaseModel):
    model_config = _ANSWER
    sequence: int
    idempotency_key: str
    correspondent_id: str
    attempts: int
    outcome: str
    status: int | None
    reason: str
    first_attempt_at: str
    last_attempt_at: str
    dead_lettered_at: str
    payload: dict[str, Any] = Field(description="The webhook body as it was posted.")


class DeadLetterPage(BaseModel):
    """A page of dead letters; pass `next_after` as `after` for the next (null: last)."""

    model_config = _ANSWER
    bot_id: str
    dead_letters: list[DeadLetter]
    next_after: int | None


class RetryResult(BaseModel):
    """Delivered (200, dead letter deleted, `reply` says what became of a reply) or
    still failing (502, kept with the new answer)."""

    model_config = _ANSWER
    bot_id: str
    sequence: int
    delivered: bool
    outcome: str
    status: int | None
    reply: str | None = None
    reason: str | None = None


class Skipped(BaseModel):
    """Deleted without delivery."""

    model_config = _ANSWER
    bot_id: str
    sequence: int
    skipped: bool


class Health(BaseModel):
    """Alive."""

    model_config = _ANSWER
    status: str
    node_connections: int


class Readiness(BaseModel):
    """Ready (200) or what is not (503)."""

    model_config = _ANSWER
    ready: bool
    problems: list[str]


class LeaseBody(BaseModel):
    model_config = _STRICT
    name: str = Field(
        max_length=300,
        pattern=LEASE_NAME_PATTERN,
        description="node-member:… or whatsapp-session:…",
    )
    holder: str = Field(min_length=1, max_length=512)
    ttl_seconds: float = Field(gt=0, le=MAX_TTL_SECONDS, allow_inf_nan=False)


class LeaseReleaseBody(BaseModel):
    model_config = _STRICT
    name: str = Field(max_length=300, pattern=LEASE_NAME_PATTERN)
    holder: str = Field(min_length=1, max_length=512)


class Acquired(BaseModel):
    """Whether the caller holds the lease now."""

    model_config = _ANSWER
    acquired: bool


class Released(BaseModel):
    """Released (when the caller held it)."""

    model_config = _ANSWER
    released: bool


class LeaseHolders(BaseModel):
    """Lease name → holder."""

    model_config = _ANSWER
    leases: dict[str, str]


class ActiveBot(BaseModel):
    model_config = _ANSWER
    bot_id: str
    config: dict[str, Any]


class ActiveBots(BaseModel):
    """The bots that should have a WhatsApp session, with what /initialize would carry."""

    model_config = _ANSWER
    bots: list[ActiveBot]


class AuthGetBody(BaseModel):
    model_config = _STRICT
    kind: AuthKind
    ids: list[AuthKeyId] = Field(max_length=MAX_AUTH_IDS)


class AuthValues(BaseModel):
    """The stored values (missing keys left out)."""

    model_config = _ANSWER
    values: dict[str, str]


class AuthSetBody(BaseModel):
    model_config = _STRICT
    changes: dict[AuthKind, dict[AuthKeyId, AuthValue | None]] = Field(
        # pydantic states the kinds as patternProperties: no other key is accepted.
        json_schema_extra={"additionalProperties": False},
        description="kind → key id → value, or null to delete the key.",
    )


class AuthSaved(BaseModel):
    """Written in one transaction."""

    model_config = _ANSWER
    ok: bool


class AuthForgotten(BaseModel):
    """The keys deleted."""

    model_config = _ANSWER
    deleted: int


class MediaStaged(BaseModel):
    """The media bytes are durable in the MediaStore and counted against the bot's quota."""

    media_processing_id: str
    size: int = Field(ge=0, description="Bytes stored.")


class MediaQuotaExceeded(BaseModel):
    """The bot's staged media already fill its quota: nothing was stored (Node sends the
    quota-exceeded frame instead of the media)."""

    model_config = ConfigDict(extra="forbid")
    error: str
    used_bytes: int = Field(ge=0)
    quota_bytes: int = Field(ge=0)


class MediaTooLarge(BaseModel):
    """The body is larger than MAX_MEDIA_BYTES: nothing was stored."""

    model_config = ConfigDict(extra="forbid")
    error: str
    max_bytes: int = Field(ge=0)
