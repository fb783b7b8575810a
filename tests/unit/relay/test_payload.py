"""The webhook body is derived from the AddressedMessage proto: typed details, reply
context and message context reach the receiver, live and replayed alike, and the
classification of answers that decides retry or give-up."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from chatbot.common.v1 import message_pb2 as m
from google.protobuf.descriptor import FieldDescriptor

from services.common.store import StoredMessage
from services.queue_svc.convert import details_json
from services.relay.payload import from_store, from_stream, to_json
from services.relay.webhook_post import _retry_after, is_permanent
from tests.helpers.clock import utc_now

BOT, CHAT = "bot-1", "123456789012345@lid"


def rich_message() -> m.AddressedMessage:
    message = m.Message(
        id=9,
        content="📍 Office",
        sender=CHAT,
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id="WA-9",
        message_size=9,
        details=d.MessageDetails(
            location=d.Location(
                latitude=52.52, longitude=13.405, coordinates_valid=True, name="Office"
            )
        ),
        reply_to=d.ReplyContext(quoted_message_id="WA-3", snippet="where are you?"),
        context=c.MessageContext(
            correspondent_id_kind=c.ID_KIND_LID,
            correspondent_phone="4915100000001",
            chat_kind=c.CHAT_KIND_DIRECT,
            from_owner=True,
            mentions=[c.Mention(jid="999@lid", phone="4915100000009", is_bot=True)],
            mentions_bot=True,
        ),
    )
    message.originating_time.FromDatetime(utc_now(-2))
    return m.AddressedMessage(
        bot_id=BOT,
        provider_name="whatsapp_baileys",
        correspondent_id=CHAT,
        sequence=5,
        message=message,
    )


def stored_copy(addressed: m.AddressedMessage) -> StoredMessage:
    """What queue_svc persists for it (its own details_json)."""
    msg = addressed.message
    return StoredMessage(
        bot_id=addressed.bot_id,
        provider_name=addressed.provider_name,
        correspondent_id=addressed.correspondent_id,
        id=msg.id,
        content=msg.content,
        sender=msg.sender,
        source="user",
        originating_time=msg.originating_time.ToDatetime(tzinfo=UTC),
        provider_message_id=msg.provider_message_id,
        message_size=msg.message_size,
        details=details_json(msg),
        sequence=addressed.sequence,
    )


def test_typed_fields_reply_and_context_reach_the_body() -> None:
    document = json.loads(from_stream(rich_message()).body)
    message = document["message"]
    assert document["sequence"] == 5 and isinstance(message["id"], int)
    assert message["details"]["location"] == {
        "latitude": 52.52,
        "longitude": 13.405,
        "coordinates_valid": True,
        "name": "Office",
        "live": False,
    }
    assert message["reply_to"] == {
        "quoted_message_id": "WA-3",
        "snippet": "where are you?",
        "snippet_truncated": False,
    }
    context = message["context"]
    assert context["from_owner"] is True and context["mentions_bot"] is True
    assert context["correspondent_id_kind"] == "ID_KIND_LID"
    assert context["correspondent_phone"] == "4915100000001"
    assert context["mentions"] == [{"jid": "999@lid", "phone": "4915100000009", "is_bot": True}]
    # UNSPECIFIED enums and unset optional fields are absent, defaults of the rest shown.
    assert "sender_id_kind" not in context and "sender_phone" not in context
    assert context["view_once"] is False and context["omitted_mention_count"] == 0
    assert "media_kind" not in message and "media_processing_id" not in message
    assert message["originating_time"].endswith("Z")


def test_a_replayed_message_carries_the_same_body_as_the_live_one() -> None:
    live = rich_message()
    assert from_stream(live) == from_store(stored_copy(live))


def test_every_field_of_the_proto_appears_without_a_hand_written_list() -> None:
    """A field added to a message type shows up in the body by its proto name."""

    def names(descriptor: object) -> set[str]:
        return {f.name for f in descriptor.fields}  # type: ignore[attr-defined]

    document = to_json(rich_message())
    assert set(document) == names(m.AddressedMessage.DESCRIPTOR)
    context = document["message"]["context"]
    never_set = {
        f.name
        for f in c.MessageContext.DESCRIPTOR.fields
        if f.has_presence or f.type == FieldDescriptor.TYPE_ENUM
    }
    assert names(c.MessageContext.DESCRIPTOR) - never_set <= set(context)


def test_answers_that_retrying_will_not_change_are_permanent() -> None:
    assert all(is_permanent(s) for s in (400, 401, 403, 404, 410, 413, 422, 301, 308))
    assert not any(is_permanent(s) for s in (408, 425, 429, 500, 502, 503, 302, 307))
    assert _retry_after("7") == 7.0
    assert _retry_after("soon") is None and _retry_after(None) is None


def test_a_transcripts_language_reaches_the_body_live_and_replayed() -> None:
    addressed = rich_message()
    message = addressed.message
    message.ClearField("details")
    message.content = "[Voice note, 0:04, Portuguese, unsure: 42%] Boa tarde"
    message.media_kind = m.MEDIA_KIND_VOICE_NOTE
    message.mime_type = "audio/ogg; codecs=opus"
    message.media_result.language = "pt"
    message.media_result.language_probability = 0.42
    document = json.loads(from_stream(addressed).body)
    assert document["message"]["media_result"] == {"language": "pt", "language_probability": 0.42}
    stored = replace(
        stored_copy(addressed), mime_type=message.mime_type, media_kind="MEDIA_KIND_VOICE_NOTE"
    )
    assert from_stream(addressed) == from_store(stored)
    assert "media_result" not in json.loads(from_stream(rich_message()).body)["message"]
