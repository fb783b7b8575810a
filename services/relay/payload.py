"""The JSON body of a webhook delivery, built alike from a streamed message and from a
stored one (catch-up reads), so a redelivery carries the same body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatbot.common.v1 import message_pb2

from services.common.store import StoredMessage, truncate_to_millis
from services.common.vocabulary import SOURCE_NAMES


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


def _item(fields: dict[str, Any], message: dict[str, Any], when: datetime) -> Item:
    # Milliseconds: what the store keeps, so a live and a replayed body are identical.
    when = truncate_to_millis(when)
    message["originating_time"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {**fields, "message": {k: v for k, v in message.items() if v is not None}}
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Item(
        fields["bot_id"], fields["sequence"], fields["correspondent_id"], when, body.encode()
    )


def from_stream(addressed: message_pb2.AddressedMessage) -> Item:
    m = addressed.message
    group = (
        {
            "group_id": m.group.group_id,
            **({"group_name": m.group.group_name} if m.group.HasField("group_name") else {}),
        }
        if m.HasField("group")
        else None
    )
    return _item(
        {
            "bot_id": addressed.bot_id,
            "provider_name": addressed.provider_name,
            "correspondent_id": addressed.correspondent_id,
            "sequence": addressed.sequence,
        },
        {
            "id": m.id,
            "content": m.content,
            "sender": m.sender,
            "source": SOURCE_NAMES.get(m.source, "user"),
            "provider_message_id": m.provider_message_id,
            "message_size": m.message_size,
            "group": group,
            "mime_type": m.mime_type if m.HasField("mime_type") else None,
            "original_filename": m.original_filename if m.HasField("original_filename") else None,
            "media_kind": (
                message_pb2.MediaKind.Name(m.media_kind)
                if m.media_kind != message_pb2.MEDIA_KIND_UNSPECIFIED
                else None
            ),
        },
        m.originating_time.ToDatetime(tzinfo=UTC),
    )


def from_store(stored: StoredMessage) -> Item:
    group = (
        {
            "group_id": stored.group_id,
            **({"group_name": stored.group_name} if stored.group_name is not None else {}),
        }
        if stored.group_id is not None
        else None
    )
    return _item(
        {
            "bot_id": stored.bot_id,
            "provider_name": stored.provider_name,
            "correspondent_id": stored.correspondent_id,
            "sequence": stored.sequence or 0,
        },
        {
            "id": stored.id,
            "content": stored.content,
            "sender": stored.sender,
            "source": stored.source,
            "provider_message_id": stored.provider_message_id,
            "message_size": stored.message_size,
            "group": group,
            "mime_type": stored.mime_type,
            "original_filename": stored.original_filename,
            "media_kind": stored.media_kind,
        },
        stored.originating_time,
    )


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
