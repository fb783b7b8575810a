"""Frames in one WebSocket message, one per line (services/common/wire_batch.py): a
newline inside a frame's strings is escaped, so splitting never cuts a frame, and
every frame the split returns parses as it would alone."""

from __future__ import annotations

import json

from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire import encode_frame, parse_node_frame
from services.common.wire_batch import join_frames, split_frames
from tests.helpers.fixtures import frame_text, load_fixtures

VALID = dict(load_fixtures("valid"))


def _node_frames() -> list[str]:
    texts = [
        frame_text(fixture)
        for fixture in VALID.values()
        if fixture.get("message_type") == "chatbot.wire.v1.NodeFrame" and "frame" in fixture
    ]
    # Canonical JSON as the gateway and Node write it: no raw newline anywhere.
    return [json.dumps(json.loads(text), ensure_ascii=False) for text in texts]


def test_joined_frames_split_back_into_the_same_frames_as_text_and_bytes() -> None:
    frames = _node_frames()
    assert len(frames) >= 10
    frames.append(json.dumps({"frameId": "f-nl", "textMessage": {"message": "two\nlines"}}))
    joined = join_frames(frames)
    assert split_frames(joined) == frames
    assert split_frames(joined.encode()) == [f.encode() for f in frames]
    for text in split_frames(joined)[:-1]:
        parse_node_frame(text)


def test_empty_lines_are_skipped_and_a_single_frame_is_passed_on_as_it_is() -> None:
    frame = _node_frames()[0]
    assert split_frames(f"\n{frame}\n\n{frame}\n") == [frame, frame]
    assert split_frames(frame) == [frame]
    assert split_frames("") == [""]
    assert split_frames(b"\n\n") == []


def test_acks_encoded_by_the_gateway_hold_no_newline() -> None:
    ack = w.GatewayFrame(
        ack=w.Ack(frame_id="f-1", status=w.ACK_STATUS_REJECTED, reason="bad\nframe \u2028")
    )
    text = encode_frame(ack)
    assert "\n" not in text
    assert split_frames(join_frames([text, text])) == [text, text]
