"""The message and media vocabulary, derived from the chatbot.common.v1 enums.

Derived rather than written out so a value added to the proto is known to the store,
the queue, the routing table and the relay at once (they had drifted copies)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from chatbot.common.v1 import message_pb2

_SOURCE_PREFIX = "MESSAGE_SOURCE_"

# MessageSource number → the lower-case name stored in `queues.source` ("user", …).
SOURCE_NAMES: Mapping[message_pb2.MessageSource.ValueType, str] = MappingProxyType(
    {
        number: name.removeprefix(_SOURCE_PREFIX).lower()
        for name, number in message_pb2.MessageSource.items()
        if number != message_pb2.MESSAGE_SOURCE_UNSPECIFIED
    }
)
# The stored name → its MessageSource number.
SOURCE_NUMBERS: Mapping[str, message_pb2.MessageSource.ValueType] = MappingProxyType(
    {name: number for number, name in SOURCE_NAMES.items()}
)
MESSAGE_SOURCES = frozenset(SOURCE_NAMES.values())

# Every MediaKind name a media job or a routing rule may carry ("MEDIA_KIND_IMAGE", …).
MEDIA_KINDS = frozenset(
    name
    for name, number in message_pb2.MediaKind.items()
    if number != message_pb2.MEDIA_KIND_UNSPECIFIED
)
