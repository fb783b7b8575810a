"""The golden wire fixtures parse (or fail) exactly as documented, and round-trip."""

from __future__ import annotations

from typing import Any

import pytest
from chatbot.wire.v1 import frames_pb2
from google.protobuf import json_format

from services.common.wire import FrameError, encode_frame, parse_frame
from tests.helpers.fixtures import frame_text, load_fixtures

VALID = load_fixtures("valid")
INVALID = load_fixtures("invalid")


def _message_type(fixture: dict[str, Any]) -> type[Any]:
    name = fixture["message_type"].rsplit(".", 1)[1]
    message_type: type[Any] = getattr(frames_pb2, name)
    return message_type


def test_fixture_sets_are_not_empty() -> None:
    assert len(VALID) >= 10
    assert len(INVALID) >= 10


@pytest.mark.parametrize(("name", "fixture"), VALID, ids=[n for n, _ in VALID])
def test_valid_frame_parses_into_expected_message(name: str, fixture: dict[str, Any]) -> None:
    message_type = _message_type(fixture)
    parsed = parse_frame(frame_text(fixture), message_type)
    expected = json_format.ParseDict(fixture["expected"], message_type())
    assert parsed == expected
    assert json_format.MessageToDict(parsed) == fixture["expected"]


@pytest.mark.parametrize(("name", "fixture"), VALID, ids=[n for n, _ in VALID])
def test_valid_frame_round_trips_through_json_and_binary(
    name: str, fixture: dict[str, Any]
) -> None:
    message_type = _message_type(fixture)
    parsed = parse_frame(frame_text(fixture), message_type)
    again = parse_frame(encode_frame(parsed), message_type)
    assert again == parsed
    assert message_type.FromString(parsed.SerializeToString()) == parsed


@pytest.mark.parametrize(("name", "fixture"), INVALID, ids=[n for n, _ in INVALID])
def test_invalid_frame_is_rejected_with_its_reason(name: str, fixture: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame(frame_text(fixture), _message_type(fixture))
    error = fixture["error"]
    reason = caught.value.reason
    if error["kind"] == "parse":
        assert reason.startswith("malformed frame:")
        assert error["mentions"] in reason
    else:
        assert reason == "invalid frame: " + "; ".join(error["problems"])


def test_rejected_frame_keeps_its_id_when_readable() -> None:
    fixture = dict(INVALID)["missing_sender"]
    with pytest.raises(FrameError) as caught:
        parse_frame(frame_text(fixture), frames_pb2.NodeFrame)
    assert caught.value.frame_id == "f-0100"


def test_oversized_frame_is_rejected_before_parsing() -> None:
    with pytest.raises(FrameError, match="more than"):
        parse_frame("{" + " " * (300 * 1024) + "}", frames_pb2.NodeFrame)


@pytest.mark.parametrize(
    "ack",
    [
        frames_pb2.Ack(frame_id="f-1", status=frames_pb2.ACK_STATUS_ACCEPTED),
        frames_pb2.Ack(frame_id="f-2", status=frames_pb2.ACK_STATUS_RETRY, reason="later"),
        frames_pb2.Ack(status=frames_pb2.ACK_STATUS_REJECTED, reason=""),
        frames_pb2.Ack(frame_id='q"\\ü😀\u2028', status=frames_pb2.ACK_STATUS_DUPLICATE),
        frames_pb2.Ack(frame_id="f-3", reason="no status"),
        frames_pb2.Ack(frame_id="f-4", status=frames_pb2.AckStatus.ValueType(99)),
        frames_pb2.Ack(),
    ],
)
def test_acks_are_encoded_as_json_format_encodes_them(ack: frames_pb2.Ack) -> None:
    """Acks take a shortcut past json_format: the text must be the same, byte for byte."""
    frame = frames_pb2.GatewayFrame(ack=ack)
    assert encode_frame(frame) == json_format.MessageToJson(frame, indent=None)
    with_id = frames_pb2.GatewayFrame(frame_id="g-1", ack=ack)
    assert encode_frame(with_id) == json_format.MessageToJson(with_id, indent=None)
