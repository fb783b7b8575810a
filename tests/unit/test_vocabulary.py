"""The vocabulary stays in step with the proto enums it is derived from."""

from __future__ import annotations

import pytest
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2

from services.common.vocabulary import (
    MEDIA_KINDS,
    MESSAGE_SOURCES,
    SOURCE_NAMES,
    SOURCE_NUMBERS,
    MediaCondition,
    RouteKey,
)


def test_every_proto_condition_has_one_media_condition_and_back() -> None:
    numbers = [
        number
        for number in queue_service_pb2.MediaCondition.values()
        if number != queue_service_pb2.MEDIA_CONDITION_UNSPECIFIED
    ]
    conditions = [MediaCondition.from_proto(number) for number in numbers]
    assert sorted(conditions) == sorted(MediaCondition)
    assert [c.to_proto() for c in conditions] == numbers


@pytest.mark.parametrize("number", [queue_service_pb2.MEDIA_CONDITION_UNSPECIFIED, 99])
def test_an_unspecified_or_unknown_condition_is_refused(number: int) -> None:
    with pytest.raises(ValueError):
        MediaCondition.from_proto(number)


def test_sources_and_kinds_cover_their_enums() -> None:
    assert len(SOURCE_NAMES) == len(message_pb2.MessageSource.values()) - 1
    assert {SOURCE_NUMBERS[name] for name in MESSAGE_SOURCES} == set(SOURCE_NAMES)
    assert len(MEDIA_KINDS) == len(message_pb2.MediaKind.values()) - 1
    assert "MEDIA_KIND_UNSPECIFIED" not in MEDIA_KINDS


def test_a_route_key_round_trips_and_drops_mime_parameters() -> None:
    key = RouteKey.of(MediaCondition.STAGED, "MEDIA_KIND_VOICE_NOTE", "Audio/OGG; codecs=opus")
    assert str(key) == "staged|MEDIA_KIND_VOICE_NOTE|audio/ogg"
    assert RouteKey.parse(str(key)) == key


@pytest.mark.parametrize("text", ["", "staged|MEDIA_KIND_IMAGE", "melted|MEDIA_KIND_IMAGE|x/y"])
def test_a_route_key_this_version_cannot_read_parses_to_none(text: str) -> None:
    assert RouteKey.parse(text) is None
