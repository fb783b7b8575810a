"""A fast path for message → proto3 JSON dict, the inverse of `json_fill`.

`json_format.MessageToDict` walks the descriptors in Python for every field; queue_svc
runs it for the context, reply and details of every message it queues (about 20 µs for
an ordinary context). `to_dict` handles the common subset (strings, booleans, integers,
enums with a known name, nested messages, lists of those) from a per-type plan read
once, and gives up (None) on anything else: floats, bytes, maps, well-known types, an
enum number without a name. The caller then uses MessageToDict, which stays the one
authority on the canonical form (tests/unit/test_proto_dict.py compares the two).
"""

from __future__ import annotations

import functools
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

_PLAIN = 0
_INT64 = 1
_ENUM = 2
_MESSAGE = 3

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_PLAIN_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)


class _GiveUpError(Exception):
    pass


@functools.cache
def _kind(field: FieldDescriptor) -> int | None:
    """How a field's values are written; None when only MessageToDict may write it."""
    if field.type in _PLAIN_TYPES:
        return _PLAIN
    if field.type in _INT64_TYPES:
        return _INT64
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _ENUM
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        nested = cast("Descriptor", field.message_type)
        if nested.full_name.startswith("google.protobuf.") or nested.GetOptions().map_entry:
            return None
        return _MESSAGE
    return None


def to_dict(message: Message) -> dict[str, Any] | None:
    """What `MessageToDict(message)` answers, or None when the message is not for the
    fast path."""
    if message.DESCRIPTOR.full_name.startswith("google.protobuf."):
        return None  # a well-known type has a JSON form of its own
    try:
        return _to_dict(message)
    except _GiveUpError:
        return None


def _to_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        kind = _kind(field)
        if kind is None:
            raise _GiveUpError
        if field.is_repeated:
            out[field.json_name] = [_value(field, kind, item) for item in value]
        else:
            out[field.json_name] = _value(field, kind, value)
    return out


def _value(field: FieldDescriptor, kind: int, value: Any) -> Any:
    if kind == _PLAIN:
        return value
    if kind == _INT64:
        return str(value)
    if kind == _ENUM:
        named = cast("EnumDescriptor", field.enum_type).values_by_number.get(value)
        if named is None:
            raise _GiveUpError
        return named.name
    return _to_dict(value)
