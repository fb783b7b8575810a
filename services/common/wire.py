"""Strict parsing of WebSocket frames (proto3 JSON of `chatbot.wire.v1`).

Whatever the input, parsing ends in a message or a FrameError with a reason: never in
a RecursionError, a MemoryError-sized structure or an exception the caller does not
expect, because a frame without an answer is resent by Node forever and its chat waits
behind it. The Node server (whatsapp_baileys_server/src/wire.js) applies the same rules
in the same order, so both sides give every frame the same verdict.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, TypeVar, cast

import orjson
from chatbot.wire.v1 import frames_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import InvalidInputError
from services.common.json_fast import keys_in, loads_plain
from services.common.json_fill import fill, fill_counting
from services.common.validation import validate_message

#: Frames from Node are small: text and metadata only, never media bytes.
MAX_FRAME_BYTES = 256 * 1024
#: Frames from the gateway may carry an outgoing media file (base64 in the JSON): room for
#: the 16 MiB default media cap (21.4 MiB as base64) and whatever an operator raises it to,
#: up to this; the gateway refuses a cap whose frames would not fit (gateway/config.py).
MAX_GATEWAY_FRAME_BYTES = 32 * 1024 * 1024
#: Our frames nest five levels deep; anything much deeper is hostile, and Python's JSON
#: decoder would hit the recursion limit around a thousand levels.
MAX_JSON_DEPTH = 32
#: JSON numbers at or beyond 2**53 are read differently by JavaScript (a double) and
#: Python (exact); proto3 JSON sends 64-bit integers as strings, so such numbers are refused.
MAX_JSON_NUMBER = 2**53
#: The longest frame id echoed in a rejection.
MAX_SALVAGED_ID = 128

M = TypeVar("M", bound=Message)

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]|[^ \t\r\n{}\[\]:,"]+', re.DOTALL)
_ID_KEYS = ("frameId", "frame_id")


class FrameError(InvalidInputError):
    """A frame that is not valid JSON of the expected message, or breaks a constraint.

    `frame_id` is set when the id could still be read, so the sender can be told which
    of its frames was refused.
    """

    def __init__(self, reason: str, frame_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame_id = frame_id


class _JsonDefectError(ValueError):
    """A JSON text that parses but that both sides refuse (duplicates, huge numbers)."""


def _well_formed(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(text: str) -> bool:
    """True when arrays/objects nest deeper than MAX_JSON_DEPTH; iterative, O(len)."""
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in ("}", "]"):
            depth -= 1
    return False


def _salvage_frame_id(text: str) -> str:
    """The top-level frame id when the frame names exactly one, without decoding the rest.

    A token walk rather than json.loads: it works on frames too deep, too big or too
    broken to decode, and an ambiguous id (given twice, or in both spellings) is not
    echoed, since the sender could be told about a frame id it never sent.
    """
    depth = 0
    found: list[str] = []
    tokens = [m.group() for m in _TOKEN.finditer(text, 0, min(len(text), MAX_FRAME_BYTES))]
    for i, token in enumerate(tokens):
        if token in ("{", "["):
            depth += 1
        elif token in ("}", "]"):
            depth -= 1
        elif depth == 1 and token.startswith('"') and tokens[i + 1 : i + 2] == [":"]:
            try:
                key = json.loads(token)
            except ValueError:
                continue
            if key in _ID_KEYS:
                found.append(tokens[i + 2] if i + 2 < len(tokens) else "")
    if len(found) != 1 or not found[0].startswith('"'):
        return ""
    try:
        frame_id = json.loads(found[0])
    except ValueError:
        return ""
    if not isinstance(frame_id, str) or not _well_formed(frame_id):
        return ""
    return frame_id[:MAX_SALVAGED_ID]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key given twice, or one field in two spellings, is refused."""
    unique = dict(pairs)
    if len({key.replace("_", "").lower() for key in unique}) == len(pairs):
        return unique  # the common case: no collision, no bookkeeping per key
    seen: dict[str, str] = {}
    for key, _ in pairs:
        # frameId and frame_id name the same field: compare without case and underscores.
        # Two keys that collide this way but are not the same field include an unknown
        # one, which would be refused anyway.
        folded = key.replace("_", "").lower()
        if folded in seen:
            raise _JsonDefectError(f"field {key!r} given twice (also as {seen[folded]!r})")
        seen[folded] = key
    return dict(pairs)


def _refuse_constant(name: str) -> NoReturn:
    raise _JsonDefectError(f"{name} is not JSON")


def _bounded_int(token: str) -> int:
    value = int(token)
    if abs(value) >= MAX_JSON_NUMBER:
        raise _JsonDefectError(
            f"number {token[:40]} is 2^53 or more; send 64-bit integers as strings"
        )
    return value


def _bounded_float(token: str) -> float:
    value = float(token)
    if not abs(value) < MAX_JSON_NUMBER:
        raise _JsonDefectError(
            f"number {token[:40]} is 2^53 or more; send 64-bit integers as strings"
        )
    return value


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"malformed frame: not UTF-8: {exc}") from None


def _load(text: str) -> Any:
    if _too_deep(text):
        raise FrameError(
            f"malformed frame: JSON nested deeper than {MAX_JSON_DEPTH} levels",
            _salvage_frame_id(text),
        )
    plain = loads_plain(text, MAX_JSON_NUMBER)
    if plain is not None:
        return plain
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    except _JsonDefectError as exc:
        raise FrameError(f"malformed frame: {exc}", _salvage_frame_id(text)) from None
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"malformed frame: not JSON: {exc}", _salvage_frame_id(text)) from None


def max_frame_bytes(message_type: type[Message]) -> int:
    """The size limit of a frame of this type (gateway frames may carry media)."""
    if message_type.DESCRIPTOR.full_name == frames_pb2.GatewayFrame.DESCRIPTOR.full_name:
        return MAX_GATEWAY_FRAME_BYTES
    return MAX_FRAME_BYTES


def parse_frame(text: str | bytes, message_type: type[M]) -> M:
    """Parses and validates one frame; raises FrameError with a reason on any defect."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    limit = max_frame_bytes(message_type)
    if size > limit:
        raise FrameError(f"frame is {size} bytes, more than the {limit} allowed")
    decoded = _decode(text)
    message = _fast_parse(decoded, message_type)
    if message is not None:
        return _validated(message, decoded)
    raw = _load(decoded)
    message = message_type()
    if fill(message, raw):
        return _validated(message, decoded)
    message = message_type()
    _check_shapes(raw, cast("Descriptor", message.DESCRIPTOR), decoded)
    try:
        json_format.ParseDict(raw, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise FrameError(f"malformed frame: {exc}", _salvage_frame_id(decoded)) from None
    except Exception as exc:
        # Whatever else the JSON → message conversion trips over is still the input's
        # fault, and a frame must always get an answer.
        raise FrameError(
            f"malformed frame: {type(exc).__name__}: {exc}", _salvage_frame_id(decoded)
        ) from None
    return _validated(message, decoded)


def _fast_parse(decoded: str, message_type: type[M]) -> M | None:
    """The message of a plain frame (the traffic), decoded by orjson and filled on the
    fast path in one walk, or None for `_load` and the strict decoder to judge. The fill
    counts the object keys it took; fewer than the text spells out means orjson kept
    only the last of a repeated key. Numbers of 2**53 or more, two spellings of a field,
    NaN and deep nesting never pass either (see json_fast and json_fill)."""
    if _too_deep(decoded):
        return None
    try:
        raw = orjson.loads(decoded)
    except orjson.JSONDecodeError:
        return None
    message = message_type()
    keys = fill_counting(message, raw)
    if keys is None or keys != keys_in(decoded):
        return None
    return message


def _check_shapes(raw: Any, descriptor: Descriptor, decoded: str) -> None:
    """Refuses values that ParseDict would coerce but Node refuses: for an enum, a number
    that is not whole (ParseDict truncates 1.5 to 1), a boolean, or a string that is not
    one of the enum's names (ParseDict reads "1" as 1); for a message, anything but an
    object (ParseDict reads "" as an empty message). Node reads only names and integers,
    and only objects."""
    if not isinstance(raw, dict) or descriptor.full_name.startswith("google.protobuf."):
        return
    for key, value in raw.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None or value is None:
            continue  # ParseDict answers unknown fields and nulls itself
        values = value if field.is_repeated and isinstance(value, list) else [value]
        for item in values:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                nested = cast("Descriptor", field.message_type)
                if not isinstance(item, dict) and not nested.full_name.startswith(
                    "google.protobuf."
                ):
                    _refuse(key, f"message {nested.full_name}", item, decoded)
                _check_shapes(item, nested, decoded)
            elif field.type == FieldDescriptor.TYPE_ENUM and not _enum_json(item, field):
                enum = cast("EnumDescriptor", field.enum_type)
                _refuse(key, f"enum {enum.full_name}", item, decoded)


def _refuse(key: str, what: str, value: Any, decoded: str) -> NoReturn:
    raise FrameError(
        f"malformed frame: {key}: cannot decode {what} from JSON: {json.dumps(value)[:40]}",
        _salvage_frame_id(decoded),
    )


def _enum_json(value: Any, field: FieldDescriptor) -> bool:
    if isinstance(value, str):
        return value in cast("EnumDescriptor", field.enum_type).values_by_name
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # Enums are int32 on the wire; ParseDict would wrap 2**32 to 0 (UNSPECIFIED), Node
    # refuses it.
    return isinstance(value, int) and -(2**31) <= value < 2**31


def _validated(message: M, decoded: str) -> M:
    problems = validate_message(message)
    if problems:
        raise FrameError("invalid frame: " + "; ".join(problems), _salvage_frame_id(decoded))
    return message


def parse_node_frame(text: str | bytes) -> frames_pb2.NodeFrame:
    """A frame received from the Node server."""
    return parse_frame(text, frames_pb2.NodeFrame)


def parse_gateway_frame(text: str | bytes) -> frames_pb2.GatewayFrame:
    """A frame received from the gateway (used by tests and tools acting as Node)."""
    return parse_frame(text, frames_pb2.GatewayFrame)


def encode_frame(message: Message) -> str:
    """Canonical proto3 JSON, the only encoding that crosses the WebSocket."""
    if (
        type(message) is frames_pb2.GatewayFrame
        and not message.frame_id
        and message.WhichOneof("payload") == "ack"
    ):
        return _encode_ack(message.ack)
    return json_format.MessageToJson(message, indent=None)


def _encode_ack(ack: frames_pb2.Ack) -> str:
    return encode_ack(ack.frame_id, ack.status, ack.reason if ack.HasField("reason") else None)


def encode_ack(frame_id: str, status: int, reason: str | None) -> str:
    """What MessageToJson writes for a frame holding only this ack (one per frame Node
    sends, so its cost counts), from its values (valid UTF-8): json_format walks the
    descriptors for every message, and json.dumps of the whole object cost more than
    the rest of the ack together."""
    fields: list[str] = []
    if frame_id:
        fields.append(f'"frameId": {_json_string(frame_id)}')
    if status:
        name = _ACK_STATUS_NAMES.get(status)
        # An unknown number is written as the number, as json_format does.
        fields.append(f'"status": "{name}"' if name else f'"status": {int(status)}')
    if reason is not None:
        fields.append(f'"reason": {_json_string(reason)}')
    return '{"ack": {' + ", ".join(fields) + "}}"


def _json_string(text: str) -> str:
    """json.dumps(text): orjson escapes an ASCII string byte for byte as json.dumps does
    (quotes, backslashes, control characters) but for DEL, which json.dumps escapes
    with everything non-ASCII."""
    if text.isascii() and "\x7f" not in text:
        return orjson.dumps(text).decode()
    return json.dumps(text)


_ACK_STATUS_NAMES = {v.number: v.name for v in frames_pb2.AckStatus.DESCRIPTOR.values}
