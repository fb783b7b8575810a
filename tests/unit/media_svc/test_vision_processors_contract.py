"""The vision and document processors keep the blocking-processor contract: importing
them loads no heavy library, and their parsed options cross a process boundary."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from services.media_svc.processors import DocumentProcessor, ImageProcessor, StickerProcessor
from services.media_svc.processors.contract import BlockingProcessor, ProcessorLimits

REPO = Path(__file__).resolve().parents[3]
HEAVY = ["PIL", "numpy", "cv2", "onnxruntime", "rapidocr", "pypdf", "docx", "lxml"]


def test_importing_the_processors_loads_no_heavy_library() -> None:
    script = (
        "import sys, json\n"
        "import services.media_svc.processors\n"
        "from services.media_svc.processors import image, sticker, document\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("processor", [ImageProcessor, StickerProcessor, DocumentProcessor])
def test_parsed_options_are_picklable_and_carry_the_limits(
    processor: type[BlockingProcessor[object, object]],
) -> None:
    parsed = processor.parse_options({"max_output_chars": 321, "max_pixels": 1000})
    copy = pickle.loads(pickle.dumps(parsed))
    assert copy == parsed
    assert processor.limits(copy) == ProcessorLimits(max_output_chars=321, max_pixels=1000)
