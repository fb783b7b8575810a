"""What a bot asks to send (`POST /bots/{id}/messages`, and the webhook relay's replies):
the JSON body read into a request whose media is not fetched yet, the hash that tells a
retried request from a different one under the same idempotency key, and the WhatsApp
message id derived from the key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import InvalidInputError
from services.common.outgoing_rules import MEDIA_KINDS
from services.common.store._outbox_types import MAX_IDEMPOTENCY_KEY

IDEMPOTENCY_HEADER = "Idempotency-Key"

#: The body's `type` → the wire kind.
KINDS: dict[str, w.OutgoingKind.ValueType] = {
    "text": w.OUTGOING_KIND_TEXT,
    "image": w.OUTGOING_KIND_IMAGE,
    "document": w.OUTGOING_KIND_DOCUMENT,
    "audio": w.OUTGOING_KIND_AUDIO,
    "voice_note": w.OUTGOING_KIND_VOICE_NOTE,
    "video": w.OUTGOING_KIND_VIDEO,
    "reaction": w.OUTGOING_KIND_REACTION,
    "read": w.OUTGOING_KIND_READ,
    "typing": w.OUTGOING_KIND_TYPING,
}
#: The MIME type a voice note must have for WhatsApp to play it as one.
VOICE_NOTE_MIME = "audio/ogg; codecs=opus"
_FIELDS = frozenset(
    {
        "idempotency_key",
        "type",
        "correspondent_id",
        "text",
        "quoted_provider_message_id",
        "media",
        "emoji",
        "target_message_id",
    }
)
_MEDIA_FIELDS = frozenset({"url", "base64", "mime_type", "filename"})


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where the bytes of an outgoing media message come from: a URL the gateway fetches
    (SSRF-guarded) or bytes given inline."""

    url: str | None
    inline: bytes | None
    mime_type: str | None
    filename: str | None


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    idempotency_key: str
    kind: w.OutgoingKind.ValueType
    correspondent_id: str
    text: str
    quoted_provider_message_id: str | None
    emoji: str | None
    target_message_id: str | None
    media: MediaSource | None
    #: sha256 of the request without its key: a retry has the same hash.
    request_hash: str

    @property
    def kind_name(self) -> str:
        return w.OutgoingKind.Name(self.kind)


def provider_message_id_for(bot_id: str, idempotency_key: str) -> str:
    """The WhatsApp id a key is sent under (the `3EB0` prefix and length of the ids
    WhatsApp Web gives its own messages): the same key is the same message to WhatsApp,
    so a resend after a crash between sending and recording is not a second message."""
    digest = hashlib.sha256(f"{bot_id}\x00{idempotency_key}".encode()).hexdigest()
    return "3EB0" + digest[:18].upper()


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise InvalidInputError(f"{name} must be a non-empty string")
    return value


def _media(value: Any, max_bytes: int) -> MediaSource:
    if not isinstance(value, dict):
        raise InvalidInputError('media must be an object: {"url": …} or {"base64": …}')
    unknown = set(value) - _MEDIA_FIELDS
    if unknown:
        raise InvalidInputError(f"media: unknown field(s) {sorted(unknown)}")
    url, data = value.get("url"), value.get("base64")
    if (url is None) == (data is None):
        raise InvalidInputError("media needs exactly one of url and base64")
    mime, filename = value.get("mime_type"), value.get("filename")
    for name, item in (("mime_type", mime), ("filename", filename), ("url", url)):
        if item is not None and (not isinstance(item, str) or not item):
            raise InvalidInputError(f"media.{name} must be a non-empty string")
    inline = None
    if data is not None:
        if not isinstance(data, str):
            raise InvalidInputError("media.base64 must be a string")
        # Checked before decoding: a huge body costs no decoded copy.
        if len(data) > 4 * ((max_bytes + 2) // 3):
            raise InvalidInputError(f"media.base64 is larger than the {max_bytes}-byte cap")
        try:
            inline = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidInputError(f"media.base64 is not valid base64: {error}") from None
        if not inline:
            raise InvalidInputError("media.base64 is empty")
        if mime is None:
            raise InvalidInputError("media.mime_type is required with media.base64")
    return MediaSource(url, inline, mime, filename)


def _request_hash(body: dict[str, Any]) -> str:
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_of(body: dict[str, Any], header: str | None) -> str:
    """The key from the `Idempotency-Key` header or the body's `idempotency_key` (either;
    both only when equal)."""
    given = body.get("idempotency_key")
    if given is not None and not isinstance(given, str):
        raise InvalidInputError("idempotency_key must be a string")
    if header is not None and given is not None and header != given:
        raise InvalidInputError(
            f"the {IDEMPOTENCY_HEADER} header and the body's idempotency_key differ"
        )
    key = header if header is not None else given
    if not key:
        raise InvalidInputError(
            f"an idempotency key is required: the {IDEMPOTENCY_HEADER} header or the body's"
            " idempotency_key (a retry with the same key is never sent twice)"
        )
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInputError(
            f"the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key


def parse_request(
    body: dict[str, Any], header_key: str | None, max_media_bytes: int
) -> OutgoingRequest:
    """The request, or InvalidInputError naming the first problem; nothing is fetched."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    key = idempotency_key_of(body, header_key)
    type_name = body.get("type", "text")
    if type_name not in KINDS:
        raise InvalidInputError(f"type must be one of {sorted(KINDS)}, got {type_name!r}")
    kind = KINDS[type_name]
    correspondent = _string(body, "correspondent_id", required=True)
    assert correspondent is not None
    text = _string(body, "text") or ""
    media_value = body.get("media")
    if kind in MEDIA_KINDS and media_value is None:
        raise InvalidInputError(f"type {type_name} needs media: {{url}} or {{base64, mime_type}}")
    if kind not in MEDIA_KINDS and media_value is not None:
        raise InvalidInputError(f"type {type_name} takes no media")
    if kind == w.OUTGOING_KIND_TEXT and not text:
        raise InvalidInputError("text must be a non-empty string")
    emoji = body.get("emoji")
    if kind == w.OUTGOING_KIND_REACTION and not isinstance(emoji, str):
        raise InvalidInputError('a reaction needs emoji (a string; "" removes the reaction)')
    target = _string(body, "target_message_id")
    if kind in (w.OUTGOING_KIND_REACTION, w.OUTGOING_KIND_READ) and not target:
        raise InvalidInputError(f"target_message_id: required for type {type_name}")
    return OutgoingRequest(
        idempotency_key=key,
        kind=kind,
        correspondent_id=correspondent,
        text=text,
        quoted_provider_message_id=_string(body, "quoted_provider_message_id"),
        emoji=emoji if kind == w.OUTGOING_KIND_REACTION else None,
        target_message_id=target,
        media=None if media_value is None else _media(media_value, max_media_bytes),
        request_hash=_request_hash(body),
    )


def outgoing_message(
    bot_id: str, request: OutgoingRequest, media: w.OutgoingMedia | None
) -> w.OutgoingMessage:
    """The wire message for a parsed request (media already fetched)."""
    message = w.OutgoingMessage(
        bot_id=bot_id,
        correspondent_id=request.correspondent_id,
        text=request.text,
        kind=request.kind,
        idempotency_key=request.idempotency_key,
    )
    if request.kind not in (w.OUTGOING_KIND_READ, w.OUTGOING_KIND_TYPING):
        message.provider_message_id = provider_message_id_for(bot_id, request.idempotency_key)
    if request.quoted_provider_message_id:
        message.quoted_provider_message_id = request.quoted_provider_message_id
    if request.emoji is not None:
        message.reaction_emoji = request.emoji
    if request.target_message_id:
        message.target_message_id = request.target_message_id
    if media is not None:
        message.media.CopyFrom(media)
    return message
