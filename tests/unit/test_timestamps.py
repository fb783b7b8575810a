"""The shortcuts between Timestamp and datetime give exactly protobuf's values, and
refuse (through protobuf) what protobuf refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.timestamps import set_from_datetime, to_datetime

_SECONDS = st.integers(min_value=-62135596800 - 10, max_value=253402300799 + 10)
_NANOS = st.integers(min_value=-5, max_value=1_000_000_005)


@settings(max_examples=500, deadline=None)
@given(seconds=_SECONDS, nanos=_NANOS)
def test_to_datetime_is_to_datetime_utc(seconds: int, nanos: int) -> None:
    timestamp = Timestamp(seconds=seconds, nanos=nanos)
    try:
        expected = timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as refused:
        try:
            to_datetime(timestamp)
        except type(refused):
            return
        raise AssertionError("accepted what protobuf refuses") from None
    found = to_datetime(timestamp)
    assert found == expected and found.tzinfo == expected.tzinfo


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
    ),
    offset_minutes=st.one_of(st.none(), st.integers(min_value=-1439, max_value=1439)),
)
def test_set_from_datetime_is_from_datetime(moment: datetime, offset_minutes: int | None) -> None:
    if offset_minutes is not None:
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected, found = Timestamp(), Timestamp()
    expected.FromDatetime(moment)
    set_from_datetime(found, moment)
    assert (found.seconds, found.nanos) == (expected.seconds, expected.nanos)


def test_now_round_trips() -> None:
    now = datetime.now(UTC)
    timestamp = Timestamp()
    set_from_datetime(timestamp, now)
    assert to_datetime(timestamp) == now
