"""Webhook dead letters: a message the relay gave up delivering to its bot's webhook,
kept with the last answer until an operator retries or skips it. The rules both adapters
follow are here, once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from services.common.errors import InvalidInputError
from services.common.store._types import to_millis

# Bounds of what an operator reads back; longer text is cut by the caller.
MAX_REASON_CHARACTERS = 1024
MAX_OUTCOME_CHARACTERS = 64


@dataclass(frozen=True, slots=True)
class WebhookDeadLetter:
    bot_id: str
    # The bot's delivery sequence of the message (its idempotency key is bot_id:sequence).
    sequence: int
    correspondent_id: str
    # The JSON body exactly as it was posted, so a retry posts the same body.
    body: str
    attempts: int
    # The last attempt's outcome (`http_410`, `timeout`, `connection_error`, …).
    outcome: str
    # The last HTTP status, None when no answer came.
    status: int | None
    reason: str
    first_attempt_at: datetime
    last_attempt_at: datetime
    dead_lettered_at: datetime

    def __post_init__(self) -> None:
        if not self.bot_id or not self.correspondent_id:
            raise InvalidInputError("a dead letter needs a bot_id and a correspondent_id")
        check_sequence(self.sequence)
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidInputError(f"attempts must be an integer, got {self.attempts!r}")
        if self.attempts < 1:
            raise InvalidInputError(f"a dead letter has at least one attempt, got {self.attempts}")
        if not self.outcome or len(self.outcome) > MAX_OUTCOME_CHARACTERS:
            raise InvalidInputError(f"outcome must have 1 to {MAX_OUTCOME_CHARACTERS} characters")
        if len(self.reason) > MAX_REASON_CHARACTERS:
            raise InvalidInputError(f"reason exceeds {MAX_REASON_CHARACTERS} characters")
        if self.status is not None and not 100 <= self.status <= 599:
            raise InvalidInputError(f"status must be an HTTP status, got {self.status}")
        for name in ("first_attempt_at", "last_attempt_at", "dead_lettered_at"):
            to_millis(getattr(self, name), name)

    @property
    def idempotency_key(self) -> str:
        return f"{self.bot_id}:{self.sequence}"


def bounded_reason(text: str) -> str:
    """A reason cut to what a dead letter keeps (a receiver's error page can be long)."""
    return text[:MAX_REASON_CHARACTERS]


DEAD_LETTER_FIELDS = tuple(f.name for f in fields(WebhookDeadLetter))
DEAD_LETTER_TIMES = ("first_attempt_at", "last_attempt_at", "dead_lettered_at")


def check_sequence(sequence: int) -> None:
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
        raise InvalidInputError(f"a delivery sequence is an integer >= 1, got {sequence!r}")


class WebhookDeadLetterStore(Protocol):
    """Webhook deliveries the relay gave up on (`webhook_dead_letters`), one per
    (bot_id, sequence)."""

    async def put_webhook_dead_letter(self, letter: WebhookDeadLetter) -> bool:
        """Stores it, replacing the bot's dead letter of that sequence if one exists (a
        relay that crashed before moving its cursor gives up on the message again);
        True when it was new."""

    async def webhook_dead_letters(
        self, bot_id: str, after_sequence: int = 0, limit: int = 100
    ) -> list[WebhookDeadLetter]:
        """The bot's dead letters above `after_sequence`, ascending, at most `limit`."""

    async def get_webhook_dead_letter(
        self, bot_id: str, sequence: int
    ) -> WebhookDeadLetter | None: ...

    async def delete_webhook_dead_letter(self, bot_id: str, sequence: int) -> bool:
        """True when this call deleted it."""

    async def webhook_dead_letter_counts(self) -> dict[str, int]:
        """bot id → dead letters kept, for every bot that has any."""
