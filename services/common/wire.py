"""Strict parsing of WebSocket frames (proto3 JSON of `chatbot.wire.v1`)."""

from __future__ import annotations

import json
from typing import TypeVar

from chatbot.wire.v1 import frames_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.errors import InvalidInputError
from services.common.validation import validate_message

#: Frames are small: text and metadata only, never media bytes.
MAX_FRAME_BYTES = 256 * 1024

M = TypeVar("M", bound=Message)


class FrameError(InvalidInputError):
    """A frame that is not valid JSON of the expected message, or breaks a constraint.

    `frame_id` is set when the id could still be read, so the sender can be told which
    of its frames was refused.
    """

    def __init__(self, reason: str, frame_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame_id = frame_id


def _salvage_frame_id(text: str | bytes) -> str:
    try:
        raw = json.loads(text)
    except ValueError:
        return ""
    frame_id = raw.get("frameId", raw.get("frame_id")) if isinstance(raw, dict) else None
    return frame_id[:128] if isinstance(frame_id, str) else ""


def parse_frame(text: str | bytes, message_type: type[M]) -> M:
    """Parses and validates one frame; raises FrameError with a reason on any defect."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame is {size} bytes, more than the {MAX_FRAME_BYTES} allowed")
    message = message_type()
    try:
        json_format.Parse(text, message, ignore_unknown_fields=False)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed frame: {exc}", _salvage_frame_id(text)) from exc
    problems = validate_message(message)
    if problems:
        raise FrameError("invalid frame: " + "; ".join(problems), _salvage_frame_id(text))
    return message


def parse_node_frame(text: str | bytes) -> frames_pb2.NodeFrame:
    """A frame received from the Node server."""
    return parse_frame(text, frames_pb2.NodeFrame)


def parse_gateway_frame(text: str | bytes) -> frames_pb2.GatewayFrame:
    """A frame received from the gateway (used by tests and tools acting as Node)."""
    return parse_frame(text, frames_pb2.GatewayFrame)


def encode_frame(message: Message) -> str:
    """Canonical proto3 JSON, the only encoding that crosses the WebSocket."""
    return json_format.MessageToJson(message, indent=None)
