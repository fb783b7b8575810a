"""Timestamp ↔ datetime without protobuf's general-purpose conversions.

`Timestamp.ToDatetime` and `FromDatetime` check and convert through several calls and
a time tuple; queue_svc converts every message once on the way in and once per
delivery, a few microseconds each time. These give the same values (tests compare
them with protobuf's on generated inputs) and leave anything unusual to protobuf:
out-of-range values, which it refuses with its own error, and naive datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The range protobuf accepts: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_SECONDS_MIN = -62135596800
_SECONDS_MAX = 253402300799


def to_datetime(timestamp: Timestamp) -> datetime:
    """What `timestamp.ToDatetime(tzinfo=UTC)` answers."""
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if not (_SECONDS_MIN <= seconds <= _SECONDS_MAX and 0 <= nanos < 1_000_000_000):
        return timestamp.ToDatetime(tzinfo=UTC)
    # Positional (days, seconds, microseconds): keyword arguments cost timedelta twice
    # as long, and every queued message's time passes here.
    return _EPOCH + timedelta(0, seconds, nanos // 1000)


def set_from_datetime(timestamp: Timestamp, moment: datetime) -> None:
    """What `timestamp.FromDatetime(moment)` sets."""
    if moment.tzinfo is None:
        timestamp.FromDatetime(moment)
        return
    since = moment - _EPOCH
    timestamp.seconds = since.days * 86400 + since.seconds
    timestamp.nanos = since.microseconds * 1000
