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
from collections.abc import Callable
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

#: A JSON number this large is the strict decoder's to judge (it refuses it).
_MAX_PLAIN_INTEGER = 2**53


class _GiveUpError(Exception):
    """Not the fast path's to decide: ParseDict takes the whole frame."""


# Sets one field of a message from its JSON value; returns how many object keys the
# value held (nested objects), so that the caller can compare with the keys the text
# spells out.
_Setter = Callable[[Message, Any], int]
# Fills a fresh message from a JSON object; returns the keys it held, nested included.
_Filler = Callable[[Message, Any], int]


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


@functools.cache
def _filler(descriptor: Descriptor) -> _Filler:
    """The filler of a message type, built from its descriptor on first use.

    A filler is a loop over the object's keys with a closure per field, made for that
    field's kind: the generic walk (a plan entry read and its kind compared for every
    key of every frame) was half the fill's cost. Descriptors are immutable and bounded
    by the contract, so the cache is too."""
    fields = cast("list[FieldDescriptor]", list(descriptor.fields))
    # A bit per field and per oneof: a second spelling of a field, or a second member
    # of a oneof, meets a bit already set.
    oneof_bits: dict[str, int] = {}
    table: dict[str, tuple[int, _Setter] | None] = {}
    for index, field in enumerate(fields):
        setter = _setter(field)
        entry = None
        if setter is not None:
            bits = 1 << index
            oneof = field.containing_oneof
            if oneof is not None:
                bits |= oneof_bits.setdefault(oneof.name, 1 << (len(fields) + len(oneof_bits)))
            entry = (bits, setter)
        # ParseDict looks a key up by json_name first, then by the proto name.
        table[field.name] = entry
        table[field.json_name] = entry

    def fill_message(message: Message, raw: Any) -> int:
        if type(raw) is not dict:
            raise _GiveUpError
        keys = len(raw)
        seen = 0
        for key, value in raw.items():
            entry = table.get(key)
            if entry is None or value is None:
                raise _GiveUpError
            bits, setter = entry
            if seen & bits:
                raise _GiveUpError
            seen |= bits
            keys += setter(message, value)
        return keys

    return fill_message


def _take_timestamp(message: Message, raw: Any) -> int:
    if type(raw) is not str:
        raise _GiveUpError
    _set_timestamp(message, raw)
    return 0


def _setter(field: FieldDescriptor) -> _Setter | None:
    kind = _kind(field)
    if kind is None:
        return None
    name = field.name
    if kind in (_MESSAGE, _TIMESTAMP_KIND):
        nested = cast("Descriptor", field.message_type)
        if kind == _TIMESTAMP_KIND:
            take: _Filler = _take_timestamp
        else:

            def take(message: Message, raw: Any) -> int:
                # Looked up at the call: a type may contain itself.
                return _filler(nested)(message, raw)

        if field.is_repeated:

            def set_messages(message: Message, value: Any) -> int:
                if type(value) is not list:
                    raise _GiveUpError
                target = getattr(message, name)
                return sum([take(target.add(), item) for item in value])

            return set_messages

        def set_message(message: Message, value: Any) -> int:
            sub = getattr(message, name)
            sub.SetInParent()
            return take(sub, value)

        return set_message
    convert = _converter(kind, _enum_numbers(field) if kind == _ENUM else None)
    if field.is_repeated:

        def set_scalars(message: Message, value: Any) -> int:
            if type(value) is not list:
                raise _GiveUpError
            getattr(message, name).extend([convert(item) for item in value])
            return 0

        return set_scalars

    def set_scalar(message: Message, value: Any) -> int:
        setattr(message, name, convert(value))
        return 0

    return set_scalar


def _converter(kind: int, enum_numbers: dict[str, int] | None) -> Callable[[Any], Any]:
    if kind == _STRING:
        return _string
    if kind == _BOOL:
        return _boolean
    if kind == _INTEGER:
        return _integer
    numbers = enum_numbers or {}

    def enum(value: Any) -> int:
        if type(value) is str:
            number = numbers.get(value)
            if number is not None:
                return number
        raise _GiveUpError

    return enum


def _string(value: Any) -> str:
    if type(value) is not str:
        raise _GiveUpError
    if not value.isascii():
        # ParseDict refuses unpaired surrogates (json.loads leaves them in a str).
        value.encode("utf-8")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _GiveUpError
    return value


def _integer(value: Any) -> int:
    if type(value) is int:
        if not -_MAX_PLAIN_INTEGER < value < _MAX_PLAIN_INTEGER:
            raise _GiveUpError
        return value
    # 64-bit integers travel as decimal strings in proto3 JSON; any other spelling
    # ParseDict may read ("+5", "1e3", "1_000") is its to judge.
    if type(value) is str and _DECIMAL.fullmatch(value):
        return int(value)
    raise _GiveUpError


def _enum_numbers(field: FieldDescriptor) -> dict[str, int]:
    enum = field.enum_type
    return {} if enum is None else {v.name: v.number for v in enum.values}


def fill(message: Message, raw: Any) -> bool:
    """Sets `message` (fresh) from the decoded JSON `raw`; False when the frame is not
    for the fast path, and `message` must then be discarded."""
    return fill_counting(message, raw) is not None


def fill_counting(message: Message, raw: Any) -> int | None:
    """`fill`, answering how many object keys `raw` held (nested ones included), or
    None when the frame is not for the fast path. Every object in `raw` is one the fast
    path took, so a decoder that collapsed a repeated key shows as a lower count than
    the text spells out."""
    try:
        return _filler(message.DESCRIPTOR)(message, raw)
    except (_GiveUpError, ValueError, TypeError):
        return None


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
