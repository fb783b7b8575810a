"""The Python and Node parsers give every generated frame the same verdict.

One Node process judges the whole corpus (whatsapp_baileys_server/scripts/frame_verdicts.js),
so the test costs one spawn, not one per frame.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.wire import FrameError, parse_node_frame
from tests.helpers.fixtures import frame_text, load_fixtures
from tests.helpers.frame_corpus import build_corpus
from tests.helpers.processes import REPO

ALL_KINDS = (
    "textMessage",
    "mediaMessage",
    "corruptMediaMessage",
    "quotaExceededMediaMessage",
    "sessionEvent",
    "ack",
)


def _python_verdict(text: str) -> dict[str, object]:
    try:
        parse_node_frame(text)
    except FrameError as error:
        return {"ok": False, "reason": error.reason}
    return {"ok": True}


def test_python_and_node_agree_on_every_generated_frame() -> None:
    if shutil.which("node") is None:  # the Node server needs it: a broken setup, not a skip
        pytest.fail("node is not installed: the Node server and `make npm` need it")
    corpus = build_corpus(1500, ALL_KINDS)
    lines = "".join(json.dumps(frame.text) + "\n" for frame in corpus)
    done = subprocess.run(
        ["node", "scripts/frame_verdicts.js"],
        cwd=REPO / "whatsapp_baileys_server",
        input=lines.encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    # split("\n"), not splitlines(): reasons may quote U+2028 and friends.
    node = [json.loads(line) for line in done.stdout.decode().split("\n") if line]
    assert len(node) == len(corpus)
    disagreements = []
    for frame, theirs in zip(corpus, node, strict=True):
        ours = _python_verdict(frame.text)
        assert "crash" not in theirs, (frame.mutation, frame.text[:300], theirs)
        if ours["ok"] != theirs["ok"]:
            disagreements.append((frame.mutation, frame.text[:300], ours, theirs))
        if frame.expect is not None:
            assert ours["ok"] is frame.expect, (frame.mutation, frame.text[:300], ours)
    assert disagreements == []
    verdicts = Counter(bool(v["ok"]) for v in node)
    # The corpus exercises both outcomes in earnest.
    assert verdicts[True] > 200 and verdicts[False] > 500, verdicts


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(_paths(item, (*prefix, index)))
    return paths


_REPLACEMENTS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        ["", "x" * 21, "x" * 65, "x" * 257, "x" * 1025, "x" * 65_537, "😀" * 33, "\u202e\x00<b>"]
    ),
    st.sampled_from(["CHAT_KIND_GROUP", "ID_KIND_ROBOT", "GROUP_ACTION_ADD", "COMMERCE_KIND_X"]),
    st.sampled_from([None, True, 0, -1, 2**32, "4294967296", 1.5, "NaN", [], {}]),
)


@st.composite
def _mutated_golden(draw: st.DrawFn) -> str:
    """A golden Node frame with one field replaced, removed, repeated past its list bound
    or given a sibling the contract does not know."""
    nested = [f["frame"] for _, f in _goldens() if f["frame"].keys() - {"frameId"}]
    frame = copy.deepcopy(draw(st.sampled_from(nested)))
    path = draw(st.sampled_from([p for p in _paths(frame) if len(p) > 1]))
    parent = frame
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "replace", "remove", "grow", "unknown"]))
    if action == "replace":
        parent[path[-1]] = draw(_REPLACEMENTS)
    elif action == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "grow" and isinstance(parent[path[-1]], list) and parent[path[-1]]:
        items = parent[path[-1]]
        items.extend([items[0]] * draw(st.sampled_from([1, 12, 40])))
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["zz", "is_bot", "isBot", "chat_kind"]))] = draw(_REPLACEMENTS)
    return json.dumps(frame, ensure_ascii=draw(st.booleans()))


def _golden_corpus(count: int) -> list[str]:
    frames: list[str] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(_mutated_golden())
    def collect(text: str) -> None:
        frames.append(text)

    collect()
    return frames


def test_python_and_node_agree_on_mutated_golden_frames() -> None:
    """Every new field (context, the new details kinds, outgoing results, identity
    mappings) with its bounds, requiredness and enum names: both parsers give the same
    verdict, and a broken constraint reads the same on both sides."""
    if shutil.which("node") is None:  # the Node server needs it: a broken setup, not a skip
        pytest.fail("node is not installed: the Node server and `make npm` need it")
    corpus = [frame_text(f) for _, f in _goldens()] + _golden_corpus(800)
    lines = "".join(json.dumps(text) + "\n" for text in corpus)
    done = subprocess.run(
        ["node", "scripts/frame_verdicts.js"],
        cwd=REPO / "whatsapp_baileys_server",
        input=lines.encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    node = [json.loads(line) for line in done.stdout.decode().split("\n") if line]
    assert len(node) == len(corpus)
    disagreements = []
    constraint_rejections = 0
    for text, theirs in zip(corpus, node, strict=True):
        ours = _python_verdict(text)
        assert "crash" not in theirs, (text[:300], theirs)
        same = ours["ok"] == theirs["ok"]
        # A constraint both sides checked reads the same; JSON decoding errors are each
        # library's own words.
        if not ours["ok"] and all(
            str(v["reason"]).startswith("invalid frame:") for v in (ours, theirs)
        ):
            same = ours["reason"] == theirs["reason"]
            constraint_rejections += 1
        if not same:
            disagreements.append((text[:300], ours, theirs))
    assert disagreements == []
    verdicts = Counter(bool(v["ok"]) for v in node)
    assert verdicts[True] > 100 and verdicts[False] > 300, verdicts
    assert constraint_rejections > 150


def _goldens() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, fixture)
        for kind in ("valid", "invalid")
        for name, fixture in load_fixtures(kind)
        if isinstance(fixture.get("frame"), dict)
        and fixture["message_type"] == "chatbot.wire.v1.NodeFrame"
    ]
