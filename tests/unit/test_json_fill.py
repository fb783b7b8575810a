"""The fast JSON → message path builds exactly what json_format.ParseDict builds, for
every frame it takes; everything else it leaves to ParseDict."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from chatbot.wire.v1 import frames_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.json_fill import fill
from tests.helpers.clock import iso_now

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wire"
TYPES: dict[str, type[Message]] = {
    "chatbot.wire.v1.NodeFrame": frames_pb2.NodeFrame,
    "chatbot.wire.v1.GatewayFrame": frames_pb2.GatewayFrame,
}


def _fixtures() -> list[tuple[str, type[Message], Any]]:
    found = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        document = json.loads(path.read_text())
        if "frame" not in document:  # a frame that is not JSON at all
            continue
        found.append((path.name, TYPES[document["message_type"]], document["frame"]))
    return found


def _agree(message_type: type[Message], raw: Any) -> bool:
    """Checks the fast path against ParseDict on one decoded frame; True when the fast
    path took it."""
    fast = message_type()
    if not fill(fast, copy.deepcopy(raw)):
        return False
    slow = message_type()
    json_format.ParseDict(raw, slow, ignore_unknown_fields=False)  # must not raise
    assert fast == slow
    assert fast.SerializeToString(deterministic=True) == slow.SerializeToString(deterministic=True)
    return True


def test_every_golden_frame_is_built_as_parse_dict_builds_it() -> None:
    taken = [name for name, message_type, raw in _fixtures() if _agree(message_type, raw)]
    # The traffic's common frames do take the fast path (else it is dead code).
    for name in ("text_message.json", "text_message_group.json", "media_message_image.json"):
        assert name in taken
    assert "media_message_document_snake_case.json" in taken  # proto names work too
    # Node sends the message context with every message: it stays on the fast path.
    assert "text_message_context.json" in taken
    assert "structured_group_event_add.json" in taken
    assert "bad_timestamp.json" not in taken


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    # Strings that are valid for one field type and not another: a lone surrogate, an
    # enum name, a decimal, a timestamp (now) and a broken one.
    st.sampled_from(["\ud800", "x\udfff", "MEDIA_KIND_IMAGE", "1", iso_now(), "T25:61:00Z"]),
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(_paths(item, (*prefix, index)))
    return paths


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_frames_are_taken_only_when_parse_dict_agrees(data: st.DataObject) -> None:
    fixtures = _fixtures()
    _, message_type, raw = data.draw(st.sampled_from(fixtures))
    raw = copy.deepcopy(raw)
    paths = [p for p in _paths(raw) if p]
    path = data.draw(st.sampled_from(paths))
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    action = data.draw(st.sampled_from(["replace", "add_key", "rename"]))
    if action == "replace":
        parent[path[-1]] = data.draw(_JSON)
    elif action == "add_key" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["frameId", "frame_id", "botId", "bot_id", "zzz"]))] = (
            data.draw(_JSON)
        )
    elif action == "rename" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=12))] = parent.pop(path[-1])
    reference: Message | None
    try:
        reference = json_format.ParseDict(copy.deepcopy(raw), message_type())
    except Exception:
        reference = None
    fast = message_type()
    if fill(fast, copy.deepcopy(raw)):
        assert reference is not None, "the fast path took a frame ParseDict refuses"
        assert fast == reference


_TWO_DIGITS = st.integers(min_value=0, max_value=99).map(lambda n: f"{n:02d}")


@st.composite
def _timestamp_texts(draw: st.DrawFn) -> str:
    """RFC 3339-like texts around the valid range: impossible dates and times, leap
    days, fraction lengths up to ten, and the spellings the fast path leaves to
    FromJsonString (offsets, one-digit fields, lower-case t)."""
    year = draw(st.integers(min_value=0, max_value=9999).map(lambda n: f"{n:04d}"))
    date = f"{year}-{draw(_TWO_DIGITS)}-{draw(_TWO_DIGITS)}"
    time = f"{draw(_TWO_DIGITS)}:{draw(_TWO_DIGITS)}:{draw(_TWO_DIGITS)}"
    fraction = draw(st.sampled_from(["", "."]))
    if fraction:
        fraction += draw(st.text(alphabet="0123456789", min_size=1, max_size=10))
    separator = draw(st.sampled_from(["T", "T", "T", "t", " "]))
    zone = draw(st.sampled_from(["Z", "Z", "Z", "+01:00", "-05:30", "", "Zx"]))
    text = f"{date}{separator}{time}{fraction}{zone}"
    if draw(st.booleans()):
        # A one-digit field, which strptime reads and the fast path does not.
        text = text.replace("-0", "-", 1)
    return text


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(_timestamp_texts(), st.just(iso_now())))
def test_timestamps_are_read_as_from_json_string_reads_them(text: str) -> None:
    """The fast path parses the common UTC spelling itself; it must set exactly what
    Timestamp.FromJsonString sets and refuse exactly what it refuses."""
    raw = {"frameId": "f-1", "textMessage": {"header": {"originatingTime": text}}}
    reference = frames_pb2.NodeFrame()
    try:
        reference.text_message.header.originating_time.FromJsonString(text)
    except ValueError:
        assert not fill(frames_pb2.NodeFrame(), copy.deepcopy(raw))
        return
    reference.frame_id = "f-1"
    fast = frames_pb2.NodeFrame()
    assert fill(fast, copy.deepcopy(raw))
    assert fast == reference
