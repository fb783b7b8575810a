"""Exponential backoff with jitter, so retrying replicas do not move in lockstep."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number `attempt` (1-based): half of min(maximum, base * 2^(n-1))
    fixed plus up to the other half at random ("equal jitter": never zero, never above)."""
    ceiling = min(maximum, base * 2.0 ** min(max(0, attempt - 1), 60))
    source = rng if rng is not None else random.Random()
    return ceiling / 2 + source.uniform(0, ceiling / 2)
