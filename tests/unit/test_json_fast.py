"""The orjson fast path of frame decoding (services/common/json_fast.py) never gives a
verdict of its own: for any JSON text it returns exactly what the strict decoder of
services.common.wire returns, or None (then the strict decoder decides)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import wire
from services.common.json_fast import loads_plain

MAX = wire.MAX_JSON_NUMBER

KEYS = st.sampled_from(
    ["a", "frameId", "frame_id", "FRAMEID", "x:y", ": a", ' ":', 'q"', "b\\", "b\\\\", ""]
)
SPACE = st.sampled_from(["", " ", "\n\t "])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([MAX - 1, MAX, -MAX, 1 - MAX, 2**63, 2**64 + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
).map(json.dumps)
STRINGS = st.one_of(
    st.text(alphabet=st.sampled_from(['"', "\\", ":", " ", "a", "\n", "é", "😀"]), max_size=8),
    st.sampled_from(["\ud800", ":", '":"', "\\"]),
).map(json.dumps)
ATOMS = st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null", "NaN", "1e400"]))


def _object(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(KEYS.map(json.dumps), SPACE, SPACE, children)
    return st.lists(pair, max_size=5).map(
        lambda pairs: "{" + ",".join(f"{k}{a}:{b}{v}" for k, a, b, v in pairs) + "}"
    )


JSON_TEXTS = st.recursive(
    ATOMS,
    lambda children: st.one_of(
        _object(children), st.lists(children, max_size=4).map(lambda v: "[" + ",".join(v) + "]")
    ),
    max_leaves=12,
)


def _strict(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(
            text,
            object_pairs_hook=wire._unique_keys,
            parse_constant=wire._refuse_constant,
            parse_int=wire._bounded_int,
            parse_float=wire._bounded_float,
        )
    except (ValueError, wire._JsonDefectError):
        return False, None


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(text=JSON_TEXTS)
def test_the_fast_path_agrees_with_the_strict_decoder_or_steps_aside(text: str) -> None:
    fast = loads_plain(text, MAX)
    if fast is None:
        return
    accepted, strict = _strict(text)
    assert accepted, text
    assert fast == strict and json.dumps(fast) == json.dumps(strict), text


@pytest.mark.parametrize(
    "text",
    [
        '{"frameId": "a", "frameId": "b"}',
        '{"frameId": "a", "frame_id": "a"}',
        '{"a": ":", "a": 1}',
        '{"a": {"b": 1, "b": 1}}',
        '{"a": 9007199254740992}',
        '{"a": -9007199254740992.0}',
        '{"a": NaN}',
        '{"a": "\\ud800"}',
    ],
)
def test_what_the_strict_decoder_must_judge_is_left_to_it(text: str) -> None:
    assert loads_plain(text, MAX) is None


def test_a_plain_frame_is_decoded_by_the_fast_path() -> None:
    text = '{"frameId": "f\\"1\\\\", "textMessage": {"message": "a: \\"b\\": c", "n": [1, 2.5]}}'
    assert loads_plain(text, MAX) == _strict(text)[1]
