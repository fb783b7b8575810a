"""The JSON body of a webhook delivery, built alike from a streamed message and from a
stored one (catch-up reads), so a redelivery carries the same body."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from chatbot.common.v1 import message_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.store import StoredMessage, truncate_to_millis
from services.common.vocabulary import SOURCE_NAMES, SOURCE_NUMBERS

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
# Enums shown in a form older receivers already parse (`"source": "user"`).
_ENUM_NAMES: dict[tuple[str, str], Any] = {
    (message_pb2.Message.DESCRIPTOR.full_name, "source"): SOURCE_NAMES,
}


@dataclass(frozen=True, slots=True)
class Item:
    """One message to deliver to its bot's webhook."""

    bot_id: str
    sequence: int
    correspondent_id: str
    originating_time: datetime
    body: bytes

    @property
    def idempotency_key(self) -> str:
        return f"{self.bot_id}:{self.sequence}"


def _timestamp(value: Timestamp) -> str:
    when = truncate_to_millis(value.ToDatetime(tzinfo=UTC))
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scalar(field: FieldDescriptor, value: Any, owner: Descriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = _ENUM_NAMES.get((owner.full_name, field.name))
        if names is not None:
            return names.get(value, str(value))
        enum = field.enum_type
        named = enum.values_by_number.get(value) if enum is not None else None
        return named.name if named is not None else value
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        # JSON has no NaN or infinity; proto3 JSON spells them as strings.
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if field.type in _INTEGERS:
        return int(value)
    return value


def to_json(message: ProtoMessage) -> Any:
    """A proto as the webhook shows it, derived from its descriptor so a field added to
    the proto appears without a change here: proto field names (snake_case); integers as
    JSON numbers (not proto3 JSON's strings for 64-bit ones); enums by value name, absent
    when 0 (UNSPECIFIED = not set); timestamps as RFC 3339 UTC with milliseconds; a
    field with presence (a sub-message, an `optional` scalar, a oneof member) only when
    set; every other scalar always, with its default; repeated fields always (a list)."""
    if isinstance(message, Timestamp):
        return _timestamp(message)
    descriptor = cast("Descriptor", message.DESCRIPTOR)
    document: dict[str, Any] = {}
    for field in cast("list[FieldDescriptor]", list(descriptor.fields)):
        value = getattr(message, field.name)
        if field.is_repeated:
            document[field.name] = [_scalar(field, item, descriptor) for item in value]
            continue
        if field.has_presence and not message.HasField(field.name):
            continue
        if field.type == FieldDescriptor.TYPE_ENUM and value == 0:
            continue
        document[field.name] = _scalar(field, value, descriptor)
    return document


def _item(addressed: message_pb2.AddressedMessage) -> Item:
    # Milliseconds: what the store keeps, so a live and a replayed body are identical.
    when = truncate_to_millis(addressed.message.originating_time.ToDatetime(tzinfo=UTC))
    document = to_json(addressed)
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Item(
        addressed.bot_id, addressed.sequence, addressed.correspondent_id, when, body.encode()
    )


def from_stream(addressed: message_pb2.AddressedMessage) -> Item:
    return _item(addressed)


def addressed_of(stored: StoredMessage) -> message_pb2.AddressedMessage:
    """The AddressedMessage Subscribe would carry for a stored message."""
    message = message_pb2.Message(
        id=stored.id,
        content=stored.content,
        sender=stored.sender,
        source=SOURCE_NUMBERS.get(stored.source, message_pb2.MESSAGE_SOURCE_UNSPECIFIED),
        provider_message_id=stored.provider_message_id,
        message_size=stored.message_size,
    )
    message.originating_time.FromDatetime(stored.originating_time)
    if stored.group_id is not None:
        message.group.group_id = stored.group_id
        if stored.group_name is not None:
            message.group.group_name = stored.group_name
    if stored.mime_type is not None:
        message.mime_type = stored.mime_type
    if stored.original_filename is not None:
        message.original_filename = stored.original_filename
    if stored.media_kind is not None:
        message.media_kind = message_pb2.MediaKind.Value(stored.media_kind)
    if stored.details is not None:
        # queue_svc keeps the typed fields of Message (`details`, `replyTo`, `context`)
        # as one JSON object keyed by their proto3 JSON names: parsed into the Message
        # as a whole, so a typed field queue_svc adds later is carried here too.
        json_format.ParseDict(json.loads(stored.details), message, ignore_unknown_fields=True)
    return message_pb2.AddressedMessage(
        bot_id=stored.bot_id,
        provider_name=stored.provider_name,
        correspondent_id=stored.correspondent_id,
        sequence=stored.sequence or 0,
        message=message,
    )


def from_store(stored: StoredMessage) -> Item:
    return _item(addressed_of(stored))


#: Reply fields beyond text and quote, passed to the gateway as they are (it validates
#: them as it validates POST /bots/{id}/messages: type, media, emoji, target_message_id).
_REPLY_EXTRA = ("type", "media", "emoji", "target_message_id")


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    quoted_provider_message_id: str | None = None
    #: (name, value) of the other fields the receiver gave, in _REPLY_EXTRA order.
    extra: tuple[tuple[str, Any], ...] = ()

    def request(self, correspondent_id: str) -> dict[str, Any]:
        """The body of the gateway's POST /bots/{id}/messages (the key goes in a header)."""
        body: dict[str, Any] = {"correspondent_id": correspondent_id, **dict(self.extra)}
        if self.text:
            body["text"] = self.text
        if self.quoted_provider_message_id:
            body["quoted_provider_message_id"] = self.quoted_provider_message_id
        return body


def reply_of(payload: bytes) -> Reply | None:
    """The reply a receiver put in its 2xx response: `{"reply": {"text": "…",
    "quoted_provider_message_id": "…"?, "type": "image"?, "media": {…}?, "emoji": …?,
    "target_message_id": …?}}` (the fields of POST /bots/{id}/messages); None for anything
    else (an empty body, other JSON). Raises ValueError for a `reply` that is present but
    malformed."""
    try:
        document = json.loads(payload) if payload.strip() else None
    except ValueError:
        return None
    if not isinstance(document, dict) or "reply" not in document:
        return None
    reply = document["reply"]
    if not isinstance(reply, dict):
        raise ValueError("reply must be an object")
    unknown = set(reply) - {"text", "quoted_provider_message_id", *_REPLY_EXTRA}
    if unknown:
        raise ValueError(f"reply has unknown field(s) {sorted(unknown)}")
    text, quoted = reply.get("text", ""), reply.get("quoted_provider_message_id")
    kind = reply.get("type", "text")
    if not isinstance(text, str) or (kind == "text" and not text):
        raise ValueError("reply.text must be a non-empty string")
    if quoted is not None and not isinstance(quoted, str):
        raise ValueError("reply.quoted_provider_message_id must be a string")
    extra = tuple((name, reply[name]) for name in _REPLY_EXTRA if name in reply)
    return Reply(text, quoted or None, extra)
