"""The per-bot staged-byte counter (the media quota): the rules both adapters follow."""

from __future__ import annotations

from services.common.errors import InvalidInputError

# An int64 bound: a delta beyond it is a bug, and MongoDB would refuse it anyway.
MAX_DELTA = 2**62


def check_usage_change(bot_id: str, delta: int) -> None:
    if not isinstance(bot_id, str) or not 0 < len(bot_id) <= 256:
        raise InvalidInputError("bot_id must be 1-256 characters")
    if isinstance(delta, bool) or not isinstance(delta, int) or abs(delta) > MAX_DELTA:
        raise InvalidInputError(f"staged-byte delta must be an integer within ±2^62, got {delta!r}")
