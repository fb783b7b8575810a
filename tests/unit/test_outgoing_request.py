"""What POST /bots/{id}/messages accepts: the body rules of every kind, the key from the
header or the body, the request hash that tells a retry from another message, and the
WhatsApp id derived from the key."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import InvalidInputError
from services.common.validation import validate_message
from services.common.wire import (
    MAX_FRAME_BYTES,
    MAX_GATEWAY_FRAME_BYTES,
    FrameError,
    encode_frame,
    parse_gateway_frame,
    parse_node_frame,
)
from services.gateway.config import GatewayConfig
from services.gateway.outgoing_request import (
    outgoing_message,
    parse_request,
    provider_message_id_for,
)

CAP = 1024
CHAT = "4915112345678@s.whatsapp.net"


def parse(body: dict[str, Any], header: str | None = "k-1") -> Any:
    return parse_request({"correspondent_id": CHAT, **body}, header, CAP)


def test_the_whatsapp_id_is_derived_from_bot_and_key() -> None:
    first = provider_message_id_for("bot-1", "k-1")
    assert first == provider_message_id_for("bot-1", "k-1")
    assert first.startswith("3EB0") and len(first) == 22 and first[4:].isupper()
    assert first != provider_message_id_for("bot-2", "k-1")
    assert first != provider_message_id_for("bot-1", "k-2")
    # The separator keeps ("bot-1", "2k") and ("bot-12", "k") apart.
    assert provider_message_id_for("bot-1", "2k") != provider_message_id_for("bot-12", "k")


def test_a_retry_has_the_same_hash_and_another_body_another() -> None:
    by_header = parse({"text": "hi"})
    by_body = parse({"text": "hi", "idempotency_key": "k-1"}, header=None)
    assert by_header.idempotency_key == by_body.idempotency_key == "k-1"
    assert by_header.request_hash == by_body.request_hash
    assert parse({"text": "hello"}).request_hash != by_header.request_hash


@pytest.mark.parametrize(
    ("body", "header", "says"),
    [
        ({"text": "hi"}, None, "idempotency key is required"),
        ({"text": "hi", "idempotency_key": "other"}, "k-1", "differ"),
        ({"text": "hi"}, "k" * 129, "1 to 128"),
        ({"text": "hi"}, "line\nbreak", "printable"),
        ({"text": ""}, "k", "text must be"),
        ({"type": "sticker"}, "k", "type must be one of"),
        ({"type": "image"}, "k", "needs media"),
        ({"type": "text", "text": "x", "media": {"url": "https://a/b"}}, "k", "takes no media"),
        ({"type": "image", "media": {"url": "https://a/b", "base64": "AA=="}}, "k", "exactly one"),
        ({"type": "image", "media": {"base64": "AA=="}}, "k", "mime_type is required"),
        ({"type": "image", "media": {"base64": "%%%", "mime_type": "image/png"}}, "k", "base64"),
        ({"type": "image", "media": {"url": "https://a/b", "colour": 1}}, "k", "unknown field"),
        (
            {"type": "image", "media": {"base64": "A" * 2000, "mime_type": "image/png"}},
            "k",
            "larger than the 1024-byte cap",
        ),
        ({"type": "reaction", "target_message_id": "W"}, "k", "needs emoji"),
        ({"type": "reaction", "emoji": "x"}, "k", "target_message_id: required"),
        ({"type": "read"}, "k", "target_message_id: required"),
        ({"text": "hi", "to": "someone"}, "k", "unknown field"),
    ],
)
def test_bad_bodies_are_refused_with_the_reason(
    body: dict[str, Any], header: str | None, says: str
) -> None:
    with pytest.raises(InvalidInputError, match=says):
        parse(body, header)


def test_every_kind_builds_a_message_the_wire_accepts() -> None:
    data = base64.b64encode(b"\x89PNG....").decode()
    bodies: dict[str, dict[str, Any]] = {
        "text": {"text": "hi", "quoted_provider_message_id": "WA-1"},
        "image": {
            "type": "image",
            "text": "c",
            "media": {"base64": data, "mime_type": "image/png"},
        },
        "reaction": {"type": "reaction", "emoji": "", "target_message_id": "WA-1"},
        "read": {"type": "read", "target_message_id": "WA-1"},
        "typing": {"type": "typing"},
    }
    for name, body in bodies.items():
        request = parse(body, header=name)
        media = (
            w.OutgoingMedia(data=request.media.inline, mime_type=request.media.mime_type or "")
            if request.media is not None
            else None
        )
        message = outgoing_message("bot-1", request, media)
        assert validate_message(message) == [], name
        assert message.idempotency_key == name
        # Read receipts and typing are no WhatsApp message: they get no id.
        has_id = name not in ("read", "typing")
        assert message.HasField("provider_message_id") is has_id
        if has_id:
            assert message.provider_message_id == provider_message_id_for("bot-1", name)
    reaction = outgoing_message("bot-1", parse(bodies["reaction"], "r"), None)
    assert reaction.HasField("reaction_emoji") and reaction.reaction_emoji == ""


def test_a_media_cap_whose_frames_would_not_reach_node_is_refused_at_start() -> None:
    base = {"GATEWAY_INSECURE_NO_AUTH": "1"}
    config = GatewayConfig.from_env(base)
    assert config.outgoing_media_max_bytes == 16 * 1024 * 1024
    # The body of a request at the cap (base64 plus room for the rest) fits in a frame.
    assert config.max_request_bytes <= MAX_GATEWAY_FRAME_BYTES
    with pytest.raises(InvalidInputError, match="GATEWAY_OUTGOING_MEDIA_MAX_BYTES"):
        GatewayConfig.from_env({**base, "GATEWAY_OUTGOING_MEDIA_MAX_BYTES": str(24 * 1024 * 1024)})


def test_a_gateway_frame_with_media_parses_beyond_the_node_frame_limit() -> None:
    message = w.OutgoingMessage(
        bot_id="bot-1",
        correspondent_id=CHAT,
        kind=w.OUTGOING_KIND_IMAGE,
        media=w.OutgoingMedia(data=b"\x00" * (2 * MAX_FRAME_BYTES), mime_type="image/png"),
    )
    text = encode_frame(w.GatewayFrame(frame_id="g-1", outgoing_message=message))
    assert len(text) > MAX_FRAME_BYTES
    assert parse_gateway_frame(text).outgoing_message.media.data == message.media.data
    with pytest.raises(FrameError, match="more than the 262144 allowed"):
        parse_node_frame(text)
