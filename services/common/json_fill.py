"""A fast path for proto3 JSON → message, for the plain frames that make up the traffic.

`json_format.ParseDict` walks the descriptors in Python for every field of every frame
and was a third of the gateway's CPU per text message. `fill` handles the common subset
(known field names, strings, booleans, integers, also as decimal strings, enum names,
nested objects, lists of those, and Timestamps) from a per-type plan read once, and gives
up (returns False) on anything else: nulls, other spellings of numbers, floats, maps,
well-known types other than Timestamp, an unknown field, a second member of a oneof, a
value of an unexpected type. The caller then parses a fresh message with ParseDict,
which stays the one authority on what is valid and on the error messages. So `fill`
never refuses a frame; for a frame it takes it builds the message ParseDict would have
built (tests/unit/test_json_fill.py compares the two on the golden fixtures and on
generated frames).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_TIMESTAMP = "google.protobuf.Timestamp"
_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)

_DECIMAL = re.compile(r"-?[0-9]{1,20}")
# The one spelling of a Timestamp that Node sends (UTC, "Z", up to nine fraction digits).
# `Timestamp.FromJsonString` goes through `strptime`, a fifth of a text frame's parse;
# anything else (offsets, one-digit fields) is still left to it.
_UTC_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# How a field's JSON value is taken on the fast path.
_STRING, _BOOL, _INTEGER, _ENUM, _MESSAGE, _TIMESTAMP_KIND = range(6)


class _GiveUpError(Exception):
    """Not the fast path's to decide: ParseDict takes the whole frame."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: int
    repeated: bool
    oneof: str | None
    # Enum fields: name → number.
    enum_numbers: dict[str, int] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    # Both spellings ParseDict accepts (json_name and the proto name) → the field;
    # None for a field the fast path does not take (maps, floats, bytes, other WKTs).
    by_key: dict[str, _Field | None]


def _kind(field: FieldDescriptor) -> int | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRING
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _BOOL
    if field.type in _INTEGERS:
        return _INTEGER
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        return _ENUM
    message_type = field.message_type
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_type is not None:
        if message_type.GetOptions().map_entry:
            return None
        full_name = message_type.full_name
        if full_name == _TIMESTAMP:
            return _TIMESTAMP_KIND
        if full_name.startswith("google.protobuf."):
            return None
        return _MESSAGE
    return None


def _enum_numbers(field: FieldDescriptor) -> dict[str, int]:
    enum = field.enum_type
    return {} if enum is None else {v.name: v.number for v in enum.values}


@functools.cache
def _plan(descriptor: Descriptor) -> _Plan:
    """Read once per message type (descriptors are immutable and bounded by the contract)."""
    fields = cast("list[FieldDescriptor]", list(descriptor.fields))
    entries: list[tuple[FieldDescriptor, _Field | None]] = []
    for field in fields:
        kind = _kind(field)
        entry = None
        if kind is not None:
            oneof = field.containing_oneof
            entry = _Field(
                field.name,
                kind,
                field.is_repeated,
                oneof.name if oneof is not None else None,
                _enum_numbers(field) if kind == _ENUM else None,
            )
        entries.append((field, entry))
    # ParseDict looks a key up by json_name first, then by the proto name.
    by_key = {field.name: entry for field, entry in entries}
    by_key.update({field.json_name: entry for field, entry in entries})
    return _Plan(by_key)


def fill(message: Message, raw: Any) -> bool:
    """Sets `message` (fresh) from the decoded JSON `raw`; False when the frame is not
    for the fast path, and `message` must then be discarded."""
    try:
        _fill(message, raw)
    except (_GiveUpError, ValueError, TypeError):
        return False
    return True


def _fill(message: Message, raw: Any) -> None:
    if type(raw) is not dict:
        raise _GiveUpError
    plan = _plan(message.DESCRIPTOR)
    seen: set[str] = set()
    for key, value in raw.items():
        field = plan.by_key.get(key)
        if field is None or value is None or field.name in seen:
            raise _GiveUpError
        seen.add(field.name)
        if field.oneof is not None:
            if field.oneof in seen:
                raise _GiveUpError
            seen.add(field.oneof)
        if field.repeated:
            if type(value) is not list:
                raise _GiveUpError
            target = getattr(message, field.name)
            if field.kind in (_MESSAGE, _TIMESTAMP_KIND):
                for item in value:
                    _set_message(target.add(), field.kind, item)
            else:
                target.extend([_scalar(field, item) for item in value])
        elif field.kind in (_MESSAGE, _TIMESTAMP_KIND):
            sub = getattr(message, field.name)
            sub.SetInParent()
            _set_message(sub, field.kind, value)
        else:
            setattr(message, field.name, _scalar(field, value))


def _set_message(message: Message, kind: int, value: Any) -> None:
    if kind == _TIMESTAMP_KIND:
        if type(value) is not str:
            raise _GiveUpError
        _set_timestamp(message, value)
    else:
        _fill(message, value)


def _set_timestamp(message: Message, value: str) -> None:
    """What `FromJsonString` sets, for the common spelling without `strptime`."""
    match = _UTC_TIMESTAMP.fullmatch(value)
    if match is None:
        message.FromJsonString(value)  # type: ignore[attr-defined]
        return
    year, month, day, hour, minute, second, fraction = match.groups()
    # Raises ValueError for an impossible date or time, as strptime does.
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    message.seconds = (  # type: ignore[attr-defined]
        (moment.toordinal() - _EPOCH_ORDINAL) * 86400
        + moment.hour * 3600
        + moment.minute * 60
        + moment.second
    )
    # The same rounding as FromJsonString.
    message.nanos = round(float("0." + fraction) * 1e9) if fraction else 0  # type: ignore[attr-defined]


def _scalar(field: _Field, value: Any) -> Any:
    kind = field.kind
    if kind == _STRING:
        if type(value) is not str:
            raise _GiveUpError
        if not value.isascii():
            # ParseDict refuses unpaired surrogates (json.loads leaves them in a str).
            value.encode("utf-8")
        return value
    if kind == _BOOL:
        if type(value) is not bool:
            raise _GiveUpError
        return value
    if kind == _INTEGER:
        if type(value) is int:
            return value
        # 64-bit integers travel as decimal strings in proto3 JSON; any other spelling
        # ParseDict may read ("+5", "1e3", "1_000") is its to judge.
        if type(value) is str and _DECIMAL.fullmatch(value):
            return int(value)
        raise _GiveUpError
    if kind == _ENUM and type(value) is str and field.enum_numbers is not None:
        number = field.enum_numbers.get(value)
        if number is not None:
            return number
    raise _GiveUpError
