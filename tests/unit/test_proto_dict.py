"""proto_dict.to_dict answers what json_format.MessageToDict answers, or None: on every
message of the golden wire fixtures (and each message nested in them), and on the
queue's typed parts that the fast path exists for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chatbot.common.v1 import context_pb2, message_pb2
from chatbot.wire.v1 import frames_pb2 as w
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.proto_dict import to_dict
from services.common.wire import FrameError, parse_gateway_frame, parse_node_frame
from services.gateway import translate
from tests.helpers.fixtures import frame_text, load_fixtures


def _frame(text: str) -> Message:
    try:
        return parse_node_frame(text)
    except FrameError:
        return parse_gateway_frame(text)


FRAMES = [(name, _frame(frame_text(fixture))) for name, fixture in load_fixtures("valid")]


def _nested(message: Message) -> Iterator[Message]:
    yield message
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in value if field.is_repeated else [value]:
            if isinstance(item, Message):
                yield from _nested(item)


@pytest.mark.parametrize(("name", "frame"), FRAMES, ids=[name for name, _ in FRAMES])
def test_every_fixture_message_converts_as_message_to_dict_does(name: str, frame: Message) -> None:
    for message in _nested(frame):
        fast = to_dict(message)
        if fast is not None:
            assert fast == json_format.MessageToDict(message), name


def test_the_queues_parts_take_the_fast_path() -> None:
    parts: list[Message] = []
    for name, frame in FRAMES:
        if isinstance(frame, w.NodeFrame) and name.startswith("structured_"):
            message = translate.structured_request(frame.structured_message).message
            parts.extend(
                getattr(message, f)
                for f in ("details", "reply_to", "context")
                if message.HasField(f)
            )
    assert len(parts) > 10
    taken = [p for p in parts if to_dict(p) is not None]
    # Only details with a float (a location's coordinates) or a Timestamp (an event's
    # time) are MessageToDict's.
    assert len(taken) >= len(parts) * 3 // 4
    contexts = [p for p in parts if isinstance(p, context_pb2.MessageContext)]
    assert contexts and all(to_dict(c) is not None for c in contexts)


def test_what_only_message_to_dict_may_write_is_left_to_it() -> None:
    with_time = message_pb2.Message(content="x")
    with_time.originating_time.seconds = 1  # a well-known type
    assert to_dict(with_time) is None
    unnamed = context_pb2.MessageContext()
    unnamed.chat_kind = 999  # type: ignore[assignment]  # an enum number without a name
    assert to_dict(unnamed) is None
    scored = message_pb2.Message()
    scored.media_result.language_probability = 0.5  # a float
    assert to_dict(scored) is None


def test_64_bit_integers_are_strings_and_enums_names() -> None:
    context = context_pb2.MessageContext(expiration_seconds=86400, forwarded=True)
    context.chat_kind = context_pb2.CHAT_KIND_GROUP
    assert to_dict(context) == json_format.MessageToDict(context)
