"""The OCR engine on rendered text: reading order, confidence filter, bundled models
used with the network unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from services.media_svc.engines.ocr import MODEL_DIR, OcrEngine, TextBox, reading_order
from tests.helpers.vision_inputs import text_image

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def engine() -> Iterator[OcrEngine]:
    yield OcrEngine.load(threads=1)


def _words(lines: list[str]) -> list[str]:
    return " ".join(lines).split()


def test_reads_lines_top_to_bottom_and_left_to_right(engine: OcrEngine) -> None:
    image = text_image(
        [
            ((40, 60), "The quick brown fox"),
            # Right column drawn first, slightly higher: still after the left one.
            ((600, 395), "second half"),
            ((40, 400), "first half"),
            ((40, 600), "Señor Müller kauft"),
        ]
    )
    lines = engine.read_lines(image)
    assert lines == ["The quick brown fox", "first half second half", "Señor Müller kauft"]


def test_a_page_at_the_size_bound_is_read(engine: OcrEngine) -> None:
    # rapidocr 3.10.0 alone finds nothing on a 2000x2000 page; the engine scales it.
    image = text_image([((100, 300), "memory check big")], (2000, 2000), font_size=120)
    assert engine.read_lines(image) == ["memory check big"]


def test_blank_image_has_no_lines(engine: OcrEngine) -> None:
    assert engine.read_lines(Image.new("L", (320, 240), 255)) == []


def test_white_text_on_transparent_background_is_read(engine: OcrEngine) -> None:
    image = text_image(
        [((20, 80), "HELLO THERE")],
        (512, 384),
        mode="RGBA",
        background=(0, 0, 0, 0),
        fill=(255, 255, 255, 255),
        font_size=56,
    )
    assert _words(engine.read_lines(image)) == ["HELLO", "THERE"]


def test_low_confidence_boxes_are_dropped(engine: OcrEngine) -> None:
    image = text_image([((40, 40), "confident words")], (420, 320))
    boxes = engine.read_boxes(image)
    assert [b.text for b in boxes] == ["confident words"]
    threshold = engine.min_score
    try:
        engine.min_score = boxes[0].score + 0.001
        assert engine.read_lines(image) == []
    finally:
        engine.min_score = threshold


def test_reading_order_groups_by_vertical_overlap() -> None:
    boxes = [
        TextBox("b", 1.0, 200, 102, 260, 130),
        TextBox("c", 1.0, 0, 200, 50, 230),
        TextBox("a", 1.0, 0, 100, 50, 128),
        TextBox("top", 1.0, 300, 10, 400, 40),
    ]
    assert reading_order(boxes) == ["top", "a b", "c"]


_OFFLINE_SCRIPT = """
import json, socket, sys
attempts = []
real_connect = socket.socket.connect
def refuse(self, address):
    attempts.append(repr(address))
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
from services.media_svc.engines.ocr import OcrEngine
from tests.helpers.vision_inputs import text_image
engine = OcrEngine.load(threads=1)
lines = engine.read_lines(text_image([((30, 40), "offline reading works")], (480, 360)))
print(json.dumps({"lines": lines, "attempts": attempts}))
"""


def test_loads_and_reads_with_the_network_unreachable(tmp_path: Path) -> None:
    before = sorted((p.name, p.stat().st_size) for p in MODEL_DIR.iterdir())
    env = {
        **os.environ,
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "ALL_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["lines"] == ["offline reading works"]
    # Nothing was downloaded beside the bundled models.
    assert sorted((p.name, p.stat().st_size) for p in MODEL_DIR.iterdir()) == before
    assert "Initiating download" not in done.stderr
