"""Hostile frames: each class of defect is refused with a reason, never an exception."""

from __future__ import annotations

import json

import pytest

from services.common.validation import is_uuid4
from services.common.wire import MAX_JSON_DEPTH, FrameError, parse_node_frame
from tests.helpers.clock import iso_now

HEADER = {
    "botId": "b",
    "correspondentId": "c",
    "sender": "s",
    "providerMessageId": "p",
    "originatingTime": iso_now(),
}


def _media(**fields: object) -> str:
    body = {
        "header": HEADER,
        "mediaProcessingId": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "mimeType": "image/jpeg",
        "mediaKind": "MEDIA_KIND_IMAGE",
        **fields,
    }
    return json.dumps({"frameId": "f-1", "mediaMessage": body})


def _refused(text: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as caught:
        parse_node_frame(text)
    return caught.value


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 100_000])
def test_deep_nesting_is_refused_and_keeps_the_frame_id(depth: int) -> None:
    text = '{"frameId":"f-7","ack":' + "[" * depth + "]" * depth + "}"
    error = _refused(text)
    assert "nested deeper" in error.reason
    assert error.frame_id == "f-7"


def test_nesting_within_the_limit_is_judged_normally() -> None:
    inner = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    error = _refused('{"frameId":"f-7","zz":' + inner + "}")
    assert "zz" in error.reason


@pytest.mark.parametrize("size", [str(2**63), str(2**64 - 1)])
def test_integers_the_store_cannot_hold_are_refused(size: str) -> None:
    error = _refused(_media(fileSize=size))
    assert "file_size: larger than 9223372036854775807" in error.reason
    assert parse_node_frame(_media(fileSize=str(2**63 - 1))).media_message.file_size == 2**63 - 1


def test_numbers_beyond_2_53_must_be_strings() -> None:
    assert "2^53" in _refused(_media(fileSize=2**53)).reason
    assert parse_node_frame(_media(fileSize=2**53 - 1)).media_message.file_size == 2**53 - 1


def test_a_uuid_with_a_trailing_newline_is_not_a_uuid() -> None:
    assert not is_uuid4("0f8fad5b-d9cb-469f-a165-70867728950e\n")
    error = _refused(_media(mediaProcessingId="0f8fad5b-d9cb-469f-a165-70867728950e\n"))
    assert "media_processing_id: not a lower-case UUID4" in error.reason


@pytest.mark.parametrize(
    "text",
    [
        '{"frameId":"f-1","frame_id":"f-2","ack":{"frameId":"x","status":1}}',
        '{"frameId":"f-1","frameId":"f-2","ack":{"frameId":"x","status":1}}',
        '{"frameId":"f-1","ack":{"frameId":"x","frame_id":"y","status":1}}',
    ],
)
def test_a_field_given_twice_is_refused_and_no_ambiguous_id_is_echoed(text: str) -> None:
    error = _refused(text)
    assert "given twice" in error.reason
    assert error.frame_id in ("", "f-1")
    assert error.frame_id != "f-2"


_HEADER = (
    '"correspondentId":"491511234@s.whatsapp.net","sender":"491511234@s.whatsapp.net",'
    f'"providerMessageId":"WA-1","originatingTime":"{iso_now()}"'
)


@pytest.mark.parametrize(
    "text",
    [
        # A valid text frame but for one repeated key deep inside: orjson keeps the last
        # value silently, so the fast path must see it from the key count.
        '{"frameId":"f-1","textMessage":{"header":{"botId":"a","botId":"b",'
        + _HEADER
        + '},"message":"hi"}}',
        '{"frameId":"f-1","textMessage":{"header":{"botId":"a",'
        + _HEADER
        + '},"message":"hi","message":"ho"}}',
        '{"frameId":"f-1","textMessage":{"header":{"bot_id":"a","botId":"a",'
        + _HEADER
        + '},"message":"hi"}}',
    ],
)
def test_a_text_frame_with_a_key_given_twice_is_refused(text: str) -> None:
    assert "given twice" in _refused(text).reason
    # The same frame without the repeat is valid, so the repeat alone is refused.
    valid = '{"frameId":"f-1","textMessage":{"header":{"botId":"a",' + _HEADER
    assert parse_node_frame(valid + '},"message":"hi"}}').text_message.header.bot_id == "a"


def test_a_lone_surrogate_in_the_frame_id_is_refused_and_not_echoed() -> None:
    error = _refused('{"frameId":"f\\ud800","ack":{"frameId":"x","status":1}}')
    assert error.frame_id == ""


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(constant: str) -> None:
    assert "is not JSON" in _refused('{"frameId":"f","zz":' + constant + "}").reason


def test_a_byte_order_mark_before_the_json_is_refused_as_in_node() -> None:
    text = b'\xef\xbb\xbf{"frameId":"f","ack":{"frameId":"x","status":1}}'
    assert "not JSON" in _refused(text).reason


@pytest.mark.parametrize("status", ["1.5", "true", '"1"', '" 2"'])
def test_an_enum_is_a_name_or_a_whole_number_as_node_reads_it(status: str) -> None:
    # ParseDict alone would read 1.5 as 1 and "1" as 1; Node refuses both.
    text = '{"frameId":"a","ack":{"frameId":"x","status":' + status + "}}"
    with pytest.raises(FrameError, match=r"cannot decode enum chatbot\.wire\.v1\.AckStatus"):
        parse_node_frame(text)
    assert parse_node_frame('{"frameId":"a","ack":{"frameId":"x","status":1.0}}').ack.status == 1


@pytest.mark.parametrize("event", ['""', "0", "true", "[]"])
def test_a_message_field_is_an_object_as_node_reads_it(event: str) -> None:
    # ParseDict alone would read "" as an empty Event (which has no required field).
    header = (
        '{"botId":"b","correspondentId":"c","sender":"s","providerMessageId":"p",'
        f'"originatingTime":"{iso_now()}"}}'
    )
    text = (
        '{"frameId":"a","structuredMessage":{"header":'
        + header
        + ',"details":{"event":'
        + event
        + "}}}"
    )
    with pytest.raises(FrameError, match=r"cannot decode message chatbot\.common\.v1\.Event"):
        parse_node_frame(text)
