"""The message and media vocabulary: message sources, media kinds, media conditions,
base MIME types and route keys, derived from the chatbot.common.v1 and queue.v1 enums.

Derived rather than written out so a value added to the proto is known to the store,
the queue, the routing table and the relay at once (they had drifted copies)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2

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

_CONDITION_PREFIX = "MEDIA_CONDITION_"


class MediaCondition(StrEnum):
    """What Node could do with the media: staged, undownloadable, or refused by quota.

    The values are the lower-case names of queue.v1 MediaCondition, the form stored in a
    job's route key; tests/unit/test_vocabulary.py keeps the two in step."""

    STAGED = "staged"
    CORRUPT = "corrupt"
    OVER_QUOTA = "over_quota"

    @classmethod
    def from_proto(cls, number: int) -> MediaCondition:
        """ValueError for UNSPECIFIED or a number this version does not know."""
        if number == queue_service_pb2.MEDIA_CONDITION_UNSPECIFIED:
            raise ValueError("media condition is unspecified")
        name = queue_service_pb2.MediaCondition.Name(number)  # type: ignore[arg-type]
        return cls(name.removeprefix(_CONDITION_PREFIX).lower())

    def to_proto(self) -> queue_service_pb2.MediaCondition.ValueType:
        return queue_service_pb2.MediaCondition.Value(_CONDITION_PREFIX + self.name)


def base_mime(mime_type: str) -> str:
    """`audio/ogg; codecs=opus` → `audio/ogg`: parameters never take part in routing."""
    return mime_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class RouteKey:
    """What a media job is routed by, stored on the job as `condition|kind|base mime`
    so pending jobs can be re-routed in bulk, one update per distinct key."""

    condition: MediaCondition
    media_kind: str
    mime_type: str

    @classmethod
    def of(cls, condition: MediaCondition, media_kind: str, mime_type: str) -> RouteKey:
        return cls(condition, media_kind, base_mime(mime_type))

    @classmethod
    def parse(cls, key: str) -> RouteKey | None:
        """None for a key this version cannot read (written by a newer one)."""
        parts = key.split("|", 2)
        if len(parts) != 3:
            return None
        try:
            return cls(MediaCondition(parts[0]), parts[1], parts[2])
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.condition.value}|{self.media_kind}|{self.mime_type}"
