"""A delivered message's typed parts (details, reply_to, context) read back from their
persisted JSON by json_fill's fast path build exactly what ParseDict builds, for every
valid text and structured frame of the golden wire fixtures."""

from __future__ import annotations

import json

import pytest
from chatbot.common.v1 import message_pb2
from google.protobuf import json_format

from services.common.wire import parse_node_frame
from services.gateway import translate
from services.queue_svc import convert
from tests.helpers.fixtures import frame_text, load_fixtures

FRAMES = [
    (name, parse_node_frame(frame_text(fixture)))
    for name, fixture in load_fixtures("valid")
    if name.startswith(("text_", "structured_"))
]


def _with_parse_dict(text: str) -> message_pb2.Message:
    message = message_pb2.Message()
    parts = json.loads(text)
    for key, field in convert._DETAIL_PARTS:
        if key in parts:
            json_format.ParseDict(parts[key], getattr(message, field), ignore_unknown_fields=True)
    return message


@pytest.mark.parametrize(("name", "frame"), FRAMES, ids=[name for name, _ in FRAMES])
def test_parts_read_back_as_parse_dict_reads_them(name: str, frame: object) -> None:
    payload = getattr(frame, frame.WhichOneof("payload"))  # type: ignore[attr-defined]
    request = (
        translate.text_request(payload)
        if name.startswith("text_")
        else translate.structured_request(payload)
    )
    text = convert.details_json(request.message)
    if text is None:
        assert name.startswith("text_")  # a plain text has no parts; a structured one has
        return
    fast = message_pb2.Message()
    convert._set_details(fast, text)
    expected = _with_parse_dict(text)
    assert fast == expected
    assert fast.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_the_fixtures_carry_parts_with_context_and_reply() -> None:
    texts = [
        convert.details_json(translate.structured_request(frame.structured_message).message)
        for name, frame in FRAMES
        if name.startswith("structured_")
    ]
    assert len(texts) > 10
    assert any(t and '"context"' in t for t in texts)
    assert any(t and '"replyTo"' in t for t in texts)


def test_a_part_the_fast_path_cannot_take_falls_back_to_parse_dict() -> None:
    # A float (media_result.language_probability) and an unknown field: ParseDict's.
    text = json.dumps(
        {"mediaResult": {"language": "de", "languageProbability": 0.5}, "context": {"new": 1}}
    )
    fast = message_pb2.Message()
    convert._set_details(fast, text)
    assert fast == _with_parse_dict(text)
    assert fast.media_result.language_probability == 0.5
