"""encode_frame's fast path for acks gives exactly json_format's text for every ack."""

from __future__ import annotations

import random

import pytest
from chatbot.wire.v1 import frames_pb2 as w
from google.protobuf import json_format

from services.common.wire import encode_frame
from services.gateway.frame_handler import _ack, ack_text
from services.gateway.queue_writer import AckOutcome

# Ids and reasons as they come: plain, quoting, control, non-ASCII, astral and lone
# surrogate escapes (frame_handler backslash-escapes those before they get here).
TEXTS = [
    "",
    "0f5d0a2e-7d55-4c43-9d6c-1b1f6f7d2c3e",
    'a"b\\c',
    "line\nbreak\t\x00",
    "é ü ß",
    "😀",
    "\u2028\u2029",
    "\\udc80",
    # Every ASCII character: the ASCII path escapes them itself.
    "".join(map(chr, range(128))),
]


def acks() -> list[w.GatewayFrame]:
    frames = []
    for number in [*w.AckStatus.values(), 999]:
        status = w.AckStatus.ValueType(number)
        for text in TEXTS:
            frames.append(w.GatewayFrame(ack=w.Ack(frame_id=text, status=status)))
            frames.append(w.GatewayFrame(ack=w.Ack(frame_id=text, status=status, reason=text)))
    # A seeded sample of longer mixed texts as well.
    rng = random.Random(27)
    alphabet = 'aZ09"\\/\n\x1f é😀\u2028'
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        frames.append(
            w.GatewayFrame(ack=w.Ack(frame_id=text, status=w.ACK_STATUS_REJECTED, reason=text))
        )
    return frames


@pytest.mark.parametrize("frame", acks(), ids=lambda f: repr(f.ack.frame_id)[:20])
def test_an_ack_encodes_as_json_format_does(frame: w.GatewayFrame) -> None:
    assert encode_frame(frame) == json_format.MessageToJson(frame, indent=None)


def test_other_frames_encode_as_json_format_does() -> None:
    outgoing = w.GatewayFrame(frame_id="f-1", outgoing_message=w.OutgoingMessage(bot_id="b"))
    assert encode_frame(outgoing) == json_format.MessageToJson(outgoing, indent=None)
    with_id = w.GatewayFrame(frame_id="f-2", ack=w.Ack(frame_id="x", status=w.ACK_STATUS_ACCEPTED))
    assert encode_frame(with_id) == json_format.MessageToJson(with_id, indent=None)


@pytest.mark.parametrize("text", [*TEXTS, "\ud800 lone", "x" * 3000])
def test_the_handlers_ack_text_is_the_encoded_ack_frame(text: str) -> None:
    # The text-frame path writes acks without building the frame; it must be the
    # frame's own encoding, surrogates and over-long reasons included.
    for number in [*w.AckStatus.values(), 999]:
        status = w.AckStatus.ValueType(number)
        for outcome in (AckOutcome(status), AckOutcome(status, text)):
            assert ack_text(text, outcome) == encode_frame(_ack(text, outcome))
