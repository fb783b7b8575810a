"""The outgoing-message outbox: what a bot asked to send, keyed by (bot id, the client's
idempotency key), from `pending` to `sent` (with the WhatsApp id) or `failed` (a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.common.errors import InvalidInputError

#: The proto bounds of OutgoingMessage.idempotency_key and bot_id.
MAX_IDEMPOTENCY_KEY = 128
MAX_BOT_ID = 128
MAX_REASON = 1024


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewOutgoing:
    """One accepted send, before it reaches Node."""

    bot_id: str
    idempotency_key: str
    correspondent_id: str
    #: The OutgoingKind name (OUTGOING_KIND_TEXT, …), for listings and logs.
    kind: str
    #: sha256 of the client's request: the same key with another request is a conflict.
    request_hash: str
    #: The serialized OutgoingMessage to send (media bytes included).
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    bot_id: str
    idempotency_key: str
    correspondent_id: str
    kind: str
    request_hash: str
    status: OutboxStatus
    #: The WhatsApp message id Node reported, once sent.
    provider_message_id: str | None
    #: Why it failed, once failed.
    reason: str | None
    created_at: datetime
    updated_at: datetime
    #: The message to send while pending (when asked for); dropped once finished.
    payload: bytes | None = None


def check_key(bot_id: str, idempotency_key: str) -> None:
    if not isinstance(bot_id, str) or not bot_id or len(bot_id) > MAX_BOT_ID:
        raise InvalidInputError(f"bot_id must be 1 to {MAX_BOT_ID} characters")
    if (
        not isinstance(idempotency_key, str)
        or not idempotency_key
        or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
    ):
        raise InvalidInputError(f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")


def check_new(item: NewOutgoing) -> None:
    check_key(item.bot_id, item.idempotency_key)
    if not item.correspondent_id or not item.payload or not item.request_hash:
        raise InvalidInputError("an outgoing message needs a correspondent, a payload and a hash")


def check_finish(status: OutboxStatus, reason: str | None) -> None:
    if status is OutboxStatus.PENDING:
        raise InvalidInputError("an outgoing message finishes as sent or failed, not pending")
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInputError(f"reason longer than {MAX_REASON} characters")
