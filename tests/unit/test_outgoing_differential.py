"""The Python and Node parsers give every outgoing-message shape the same verdict, with
the same reasons: each kind (and an unknown one) with and without text, media, emoji
and target (the kind-dependent rule of services/common/outgoing_rules.py and
whatsapp_baileys_server/src/outgoing_rules.js)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from typing import Any

import pytest
from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire import FrameError, parse_gateway_frame
from tests.helpers.processes import REPO

_ABSENT = object()


def _frames() -> list[str]:
    kinds: list[Any] = [*w.OutgoingKind.keys(), 42]
    texts = [_ABSENT, "", "hi"]
    medias = [_ABSENT, {"data": "AAEC", "mimeType": "image/png"}, {"data": "", "mimeType": ""}]
    emojis = [_ABSENT, "", "\N{THUMBS UP SIGN}"]
    targets = [_ABSENT, "", "WA-1"]
    frames = []
    for n, (kind, text, media, emoji, target) in enumerate(
        itertools.product(kinds, texts, medias, emojis, targets)
    ):
        message: dict[str, Any] = {"botId": "bot-1", "correspondentId": "x@s.whatsapp.net"}
        message["kind"] = kind
        for name, value in (
            ("text", text),
            ("media", media),
            ("reactionEmoji", emoji),
            ("targetMessageId", target),
        ):
            if value is not _ABSENT:
                message[name] = value
        frames.append(json.dumps({"frameId": f"g-{n}", "outgoingMessage": message}))
    return frames


def _python_verdict(text: str) -> dict[str, Any]:
    try:
        parse_gateway_frame(text)
    except FrameError as error:
        return {"ok": False, "reason": error.reason}
    return {"ok": True}


def test_python_and_node_agree_on_every_outgoing_shape() -> None:
    if shutil.which("node") is None:  # the Node server needs it: a broken setup, not a skip
        pytest.fail("node is not installed: the Node server and `make npm` need it")
    frames = _frames()
    done = subprocess.run(
        ["node", "scripts/frame_verdicts.js", "--gateway"],
        cwd=REPO / "whatsapp_baileys_server",
        input="".join(json.dumps(f) + "\n" for f in frames).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    node = [json.loads(line) for line in done.stdout.decode().split("\n") if line]
    assert len(node) == len(frames)
    ours = [_python_verdict(f) for f in frames]
    for frame, mine, theirs in zip(frames, ours, node, strict=True):
        assert "crash" not in theirs, (frame, theirs)
        assert mine["ok"] == theirs["ok"], (frame, mine, theirs)
        assert mine.get("reason") == theirs.get("reason"), (frame, mine, theirs)
    # Both verdicts occur, and the kind rule is among the reasons: the test can fail.
    accepted = sum(v["ok"] for v in ours)
    assert 0 < accepted < len(frames)
    assert any("required for OUTGOING_KIND_REACTION" in v.get("reason", "") for v in ours)
    assert any("not allowed for OUTGOING_KIND_TYPING" in v.get("reason", "") for v in ours)
