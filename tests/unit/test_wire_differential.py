"""The Python and Node parsers give every generated frame the same verdict.

One Node process judges the whole corpus (whatsapp_baileys_server/scripts/frame_verdicts.js),
so the test costs one spawn, not one per frame.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

import pytest

from services.common.wire import FrameError, parse_node_frame
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
