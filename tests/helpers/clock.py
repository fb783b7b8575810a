"""Now-relative times for tests.

Every time a test sends through a time-windowed path (window refill, age limits,
stale-job cleanup, lease expiry, orphan grace, outbox resend) is derived from the
current clock through these helpers, so no test goes stale as the calendar moves.
`tests/unit/test_no_calendar_literals.py` refuses literal dates in test code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now(offset_seconds: float = 0.0) -> datetime:
    """Now (timezone-aware, UTC), shifted by `offset_seconds` (negative = in the past)."""
    return datetime.now(UTC) + timedelta(seconds=offset_seconds)


def iso_now(offset_seconds: float = 0.0) -> str:
    """Now as the RFC 3339 string a wire frame carries, whole seconds, `Z` suffix."""
    return utc_now(offset_seconds).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def naive_now() -> datetime:
    """A datetime without a timezone, for checks that such values are refused."""
    return datetime.now()
