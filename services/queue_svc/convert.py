"""Translation between the QueueService protos and the domain types."""

from __future__ import annotations

import json
import re
from typing import Any

from chatbot.common.v1 import context_pb2, message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.errors import InvalidInputError
from services.common.json_fill import fill
from services.common.proto_dict import to_dict
from services.common.timestamps import set_from_datetime, to_datetime
from services.common.vocabulary import SOURCE_NAMES, SOURCE_NUMBERS, MediaCondition
from services.queue_svc.messages import (
    CONTEXT_KEY,
    MEDIA_RESULT_KEY,
    Identity,
    MediaInfo,
    NewMessage,
    QueuedMessage,
)
from services.queue_svc.service_types import PlaceholderRequest
from services.queue_svc.subscriptions import Delivery

# A language code as Whisper and ISO 639 write it ("pt", "haw", "zh-Hant").
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})?")


def details_json(message: q.NewMessage | message_pb2.Message) -> str | None:
    """The typed fields `details`, `reply_to`, `context` (and a resolved media message's
    `media_result`) as one JSON object (canonical
    proto3 JSON of each, sorted keys): the form queued, persisted in `queues` (and kept
    with a media job) and read back."""
    parts = {}
    if message.HasField("details"):
        parts["details"] = _dict_of(message.details)
    if message.HasField("reply_to"):
        parts["replyTo"] = _dict_of(message.reply_to)
    if message.HasField("context"):
        parts[CONTEXT_KEY] = _dict_of(message.context)
    if isinstance(message, message_pb2.Message) and message.HasField("media_result"):
        parts[MEDIA_RESULT_KEY] = _dict_of(message.media_result)
    return json.dumps(parts, sort_keys=True, ensure_ascii=False) if parts else None


def _dict_of(part: Message) -> dict[str, Any]:
    # Every queued message with a context passes here: proto_dict's fast path first.
    fast = to_dict(part)
    return fast if fast is not None else json_format.MessageToDict(part)


def identity_of(message: q.NewMessage) -> Identity | None:
    """The part of the context queue_svc reads: how the chat and the sender are named."""
    if not message.HasField("context"):
        return None
    context = message.context
    return Identity(
        correspondent_kind=context_pb2.IdKind.Name(context.correspondent_id_kind),
        correspondent_phone=(
            context.correspondent_phone if context.HasField("correspondent_phone") else None
        ),
        sender_kind=context_pb2.IdKind.Name(context.sender_id_kind),
        sender_phone=context.sender_phone if context.HasField("sender_phone") else None,
    )


def _set_details(message: message_pb2.Message, text: str) -> None:
    # Written by details_json; unknown fields are ignored so that a newer writer's
    # additions do not make older readers fail on persisted messages.
    parts = json.loads(text)
    for key, field in _DETAIL_PARTS:
        if key in parts:
            _parse_part(message, field, parts[key])


# The keys of details_json and the fields they fill.
_DETAIL_PARTS = (
    ("details", "details"),
    ("replyTo", "reply_to"),
    (CONTEXT_KEY, "context"),
    (MEDIA_RESULT_KEY, "media_result"),
)


def _parse_part(message: message_pb2.Message, field: str, value: Any) -> None:
    # Every delivered message with a context passes here: json_fill's fast path first
    # (it builds what ParseDict builds, or gives up), ParseDict for the rest.
    if fill(getattr(message, field), value):
        return
    message.ClearField(field)  # type: ignore[arg-type]
    json_format.ParseDict(value, getattr(message, field), ignore_unknown_fields=True)


def media_result_json(request: q.UpdateByMediaIdRequest) -> str | None:
    """The request's typed values as MediaResult JSON, checked like any typed field
    (the edge has bounded the language's length already); None when absent."""
    if not request.HasField("media_result"):
        return None
    result = request.media_result
    if result.HasField("language") and not _LANGUAGE.fullmatch(result.language):
        raise InvalidInputError(
            f"media_result.language must be an ISO 639 code, got {result.language!r}"
        )
    if result.HasField("language_probability") and not (0.0 <= result.language_probability <= 1.0):
        raise InvalidInputError("media_result.language_probability must be from 0 to 1")
    values = json_format.MessageToDict(result)
    return json.dumps(values, sort_keys=True) if values else None


def new_message(message: q.NewMessage) -> NewMessage:
    """Assumes validate_message passed (source set, time present)."""
    return NewMessage(
        content=message.content,
        sender=message.sender,
        source=SOURCE_NAMES[message.source],
        originating_time=to_datetime(message.originating_time),
        provider_message_id=message.provider_message_id,
        group_id=message.group.group_id if message.HasField("group") else None,
        group_name=(
            message.group.group_name
            if message.HasField("group") and message.group.HasField("group_name")
            else None
        ),
        details=details_json(message),
        identity=identity_of(message),
    )


def placeholder_request(request: q.InjectPlaceholderRequest) -> PlaceholderRequest:
    try:
        condition = MediaCondition.from_proto(request.condition)
    except ValueError as exc:
        raise InvalidInputError(f"condition: {exc}") from exc
    return PlaceholderRequest(
        bot_id=request.bot_id,
        correspondent_id=request.correspondent_id,
        message=new_message(request.message),
        media=MediaInfo(
            mime_type=request.mime_type,
            media_kind=message_pb2.MediaKind.Name(request.media_kind),
            original_filename=(
                request.original_filename if request.HasField("original_filename") else None
            ),
        ),
        media_processing_id=request.media_processing_id,
        condition=condition,
        file_size=request.file_size,
        condition_detail=(
            request.condition_detail if request.HasField("condition_detail") else None
        ),
    )


def message_proto(entry: QueuedMessage) -> message_pb2.Message:
    message = message_pb2.Message()
    set_message(message, entry)
    return message


def set_message(message: message_pb2.Message, entry: QueuedMessage) -> None:
    """Sets a fresh `message` in place (a field of a larger message: no copy)."""
    message.id = entry.id
    message.content = entry.content
    message.sender = entry.sender
    message.source = SOURCE_NUMBERS[entry.source]
    message.provider_message_id = entry.provider_message_id
    message.message_size = entry.message_size
    set_from_datetime(message.originating_time, entry.originating_time)
    if entry.group_id is not None:
        message.group.group_id = entry.group_id
        if entry.group_name is not None:
            message.group.group_name = entry.group_name
    if entry.media_processing_id is not None:
        message.media_processing_id = entry.media_processing_id
    if entry.mime_type is not None:
        message.mime_type = entry.mime_type
    if entry.original_filename is not None:
        message.original_filename = entry.original_filename
    if entry.media_kind is not None:
        message.media_kind = message_pb2.MediaKind.Value(entry.media_kind)
    if entry.details is not None:
        _set_details(message, entry.details)


def addressed(delivery: Delivery) -> message_pb2.AddressedMessage:
    target = message_pb2.AddressedMessage()
    set_addressed(target, delivery)
    return target


def set_addressed(target: message_pb2.AddressedMessage, delivery: Delivery) -> None:
    """Sets a fresh `target` in place: Subscribe adds one per message to a batch, and
    a constructor argument would copy each nested message once more."""
    target.bot_id = delivery.bot_id
    target.provider_name = delivery.provider_name
    target.correspondent_id = delivery.correspondent_id
    target.message.SetInParent()  # present even when every field is a default
    set_message(target.message, delivery.message)
    target.sequence = delivery.sequence
