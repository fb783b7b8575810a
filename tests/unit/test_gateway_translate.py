"""Wire frames become QueueService requests without losing or inventing anything."""

from __future__ import annotations

import pytest
from chatbot.common.v1 import context_pb2, message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.wire.v1 import frames_pb2 as w

from services.common.validation import is_uuid4, validate_message
from services.common.wire import encode_frame, parse_node_frame
from services.gateway import translate
from tests.helpers.fixtures import frame_text, load_fixtures

VALID = dict(load_fixtures("valid"))
STRUCTURED_FIXTURE = next(
    name for name, f in VALID.items() if "structuredMessage" in f.get("frame", {})
)


def test_text_frame_becomes_a_valid_add_message_request() -> None:
    frame = parse_node_frame(frame_text(VALID["text_message_group"])).text_message
    request = translate.text_request(frame)
    assert validate_message(request) == []
    assert request.bot_id == "bot-1"
    assert request.correspondent_id == "120363041234567890@g.us"
    assert request.message.content == "hi all"
    assert request.message.source == message_pb2.MESSAGE_SOURCE_USER
    assert request.message.group.group_name == "Team"
    frame.header.group.group_name = "Team\u202e\x1b[31m"
    assert translate.text_request(frame).message.group.group_name == "Team [31m"
    assert request.message.originating_time == frame.header.originating_time


def test_media_frame_keeps_caption_id_and_full_mime() -> None:
    frame = parse_node_frame(frame_text(VALID["media_message_voice_note"])).media_message
    request = translate.media_request(frame)
    assert validate_message(request) == []
    assert request.media_processing_id == frame.media_processing_id
    assert request.mime_type == "audio/ogg; codecs=opus"
    assert request.condition == q.MEDIA_CONDITION_STAGED
    assert request.file_size == 8842
    assert not request.HasField("original_filename")


def test_corrupt_frame_gets_a_stable_uuid4_and_its_reason() -> None:
    fixture = VALID["corrupt_media_message"]
    first = translate.unstaged_request(parse_node_frame(frame_text(fixture)).corrupt_media_message)
    again = translate.unstaged_request(parse_node_frame(frame_text(fixture)).corrupt_media_message)
    assert validate_message(first) == []
    assert is_uuid4(first.media_processing_id)
    assert first.media_processing_id == again.media_processing_id
    assert first.condition == q.MEDIA_CONDITION_CORRUPT
    assert first.condition_detail == "download failed: HTTP 410 after re-upload"
    assert first.message.content == "party!"


def test_over_quota_frame_is_routed_as_over_quota() -> None:
    fixture = VALID["quota_exceeded_media_message"]
    frame = parse_node_frame(frame_text(fixture)).quota_exceeded_media_message
    request = translate.unstaged_request(frame)
    assert request.condition == q.MEDIA_CONDITION_OVER_QUOTA
    assert "1073741824 of 1073741824" in request.condition_detail
    assert request.original_filename == "backup.zip"


def test_derived_ids_differ_per_bot_and_message() -> None:
    ids = {
        translate.derived_media_id(bot, message) for bot in ("a", "b") for message in ("m1", "m2")
    }
    assert len(ids) == 4
    assert all(is_uuid4(i) for i in ids)


def test_context_is_sanitized_rendered_and_passed_on() -> None:
    fixture = VALID["text_message_context"]
    frame = parse_node_frame(frame_text(fixture)).text_message
    frame.header.context.sender_name = "Anna\u202e\x00"
    frame.header.context.ad_reply.title = "Summer sale:\n20% off"
    request = translate.text_request(frame)
    assert validate_message(request) == []
    assert request.message.content == fixture["rendered"]
    context = request.message.context
    assert context.sender_name == "Anna"
    assert context.correspondent_phone == "4915112345678"
    assert [m.jid for m in context.mentions] == [m.jid for m in frame.header.context.mentions]
    assert context.ad_reply.click_id == frame.header.context.ad_reply.click_id


def test_media_keeps_a_sanitized_reply_and_context_for_later() -> None:
    frame = parse_node_frame(frame_text(VALID["media_message_image_reply"])).media_message
    frame.reply_to.snippet = "see\x00 you\u2066"
    frame.header.context.view_once = True
    frame.header.context.sender_phone = "+49 151 1234"
    request = translate.media_request(frame)
    assert validate_message(request) == []
    assert request.message.reply_to.snippet == "see you"
    assert request.message.context.view_once
    assert request.message.context.sender_phone == "491511234"
    # The caption stays the sender's own: the media's text is rendered when it resolves.
    assert request.message.content == frame.message


def test_a_group_event_names_the_sender_by_phone() -> None:
    fixture = VALID["structured_group_event_add"]
    frame = parse_node_frame(frame_text(fixture)).structured_message
    request = translate.structured_request(frame)
    assert request.message.content == fixture["rendered"]
    assert request.message.content.startswith("[Group] +4917600000001 added ")


def _context() -> context_pb2.MessageContext:
    return context_pb2.MessageContext(
        correspondent_id_kind=context_pb2.ID_KIND_LID,
        correspondent_phone="4915100000042",
        sender_id_kind=context_pb2.ID_KIND_LID,
        sender_phone="4915100000042",
        chat_kind=context_pb2.CHAT_KIND_DIRECT,
        forwarded=True,
    )


@pytest.mark.parametrize(
    "name",
    [
        "text_message",
        "media_message_image",
        "corrupt_media_message",
        "quota_exceeded_media_message",
        STRUCTURED_FIXTURE,
    ],
)
def test_every_kind_of_frame_carries_its_context_to_queue_svc(name: str) -> None:
    frame = parse_node_frame(frame_text(VALID[name]))
    payload = getattr(frame, frame.WhichOneof("payload") or "")
    payload.header.context.CopyFrom(_context())
    # Through the wire's own validation, as the gateway receives it.
    frame = parse_node_frame(encode_frame(frame))
    kind = frame.WhichOneof("payload")
    payload = getattr(frame, kind or "")
    request: q.AddMessageRequest | q.InjectPlaceholderRequest
    if kind == "text_message":
        request = translate.text_request(payload)
    elif kind == "structured_message":
        request = translate.structured_request(payload)
    elif kind == "media_message":
        request = translate.media_request(payload)
    else:
        request = translate.unstaged_request(payload)
    assert validate_message(request) == []
    assert request.message.context == _context()


def test_a_frame_without_context_gets_none() -> None:
    frame = parse_node_frame(frame_text(VALID["text_message"])).text_message
    assert not translate.text_request(frame).message.HasField("context")


def test_identity_mappings_become_a_learn_identities_request() -> None:
    frame = w.NodeFrame(
        frame_id="id-1",
        identity_mappings=w.IdentityMappings(
            bot_id="bot-1",
            mappings=[
                w.IdentityMapping(lid="1@lid", phone_jid="491@s.whatsapp.net"),
                w.IdentityMapping(lid="2@lid", phone_jid="492@s.whatsapp.net"),
            ],
        ),
    )
    parsed = parse_node_frame(encode_frame(frame)).identity_mappings
    request = translate.identities_request(parsed)
    assert validate_message(request) == []
    assert request.bot_id == "bot-1"
    assert [(p.lid, p.phone_jid) for p in request.pairs] == [
        ("1@lid", "491@s.whatsapp.net"),
        ("2@lid", "492@s.whatsapp.net"),
    ]
