"""Text recognition on images with RapidOCR (PP-OCR models on onnxruntime), offline.

`rapidocr` ships its detection, orientation and recognition models inside the wheel.
Left to its defaults it resolves them through its model table and downloads any file
whose checksum does not match, so the engine hands it the bundled files by path: that
path skips the downloader entirely, and a missing file fails at load instead of
reaching for the network. Models load lazily inside rapidocr, so `load` also runs one
tiny recognition to bring every session up before the first job.

Heavy imports (rapidocr, numpy, Pillow) happen at this module's import; only worker
processes import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rapidocr
from PIL import Image
from rapidocr import RapidOCR

_log = logging.getLogger(__name__)

MODEL_DIR = Path(rapidocr.__file__).resolve().parent / "models"
# The PP-OCR files bundled in rapidocr 3.10.0 (the defaults of its config.yaml).
DETECTION_MODEL = MODEL_DIR / "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = MODEL_DIR / "PP-OCRv6_rec_small.onnx"
ORIENTATION_MODEL = MODEL_DIR / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

# Longest side handed to the models (rapidocr's own default); larger images are scaled
# down first. Memory follows it: ~0.55 GB resident for a 1024x768 image, ~1.1 GB (2 GB
# of address space) for one at 2000 px or more.
DEFAULT_MAX_SIDE = 2000
# Recognitions below this confidence are mostly texture read as letters.
DEFAULT_MIN_SCORE = 0.6
# Two boxes are on one line when their vertical overlap is at least this share of the
# shorter box's height.
_SAME_LINE_OVERLAP = 0.5


@dataclass(frozen=True, slots=True)
class TextBox:
    """One recognised piece of text and its axis-aligned bounds in image pixels."""

    text: str
    score: float
    left: float
    top: float
    right: float
    bottom: float

    @property
    def height(self) -> float:
        return max(self.bottom - self.top, 1.0)


class OcrEngine:
    """A loaded RapidOCR pipeline; build it once per process with `load` and reuse it."""

    def __init__(
        self,
        ocr: RapidOCR,
        min_score: float = DEFAULT_MIN_SCORE,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        self._ocr = ocr
        self.min_score = min_score
        self.max_side = max_side

    @classmethod
    def load(
        cls,
        *,
        threads: int = 0,
        min_score: float = DEFAULT_MIN_SCORE,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> OcrEngine:
        """Opens the bundled models. `threads`: onnxruntime intra-op threads per session
        (0: onnxruntime's choice, one per core); a pool running several worker processes
        on few cores should give each 1. `max_side`: longest side the models see."""
        for model in (DETECTION_MODEL, RECOGNITION_MODEL, ORIENTATION_MODEL):
            if not model.is_file():
                raise FileNotFoundError(f"rapidocr bundled model missing: {model}")
        ort_threads = threads if threads > 0 else -1
        params: dict[str, Any] = {
            # At "warning" rapidocr logs every image without text.
            "Global.log_level": "error",
            "Global.max_side_len": max_side,
            "Det.model_path": str(DETECTION_MODEL),
            "Rec.model_path": str(RECOGNITION_MODEL),
            "Cls.model_path": str(ORIENTATION_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": ort_threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": ort_threads,
        }
        engine = cls(RapidOCR(params=params), min_score, max_side)
        # rapidocr opens its sessions on first use; do it now, not in the first job.
        engine.read_lines(Image.new("RGB", (64, 32), "white"))
        _log.info("OCR engine loaded (models in %s)", MODEL_DIR)
        return engine

    def read_boxes(self, image: Image.Image) -> list[TextBox]:
        """Every recognised box at or above `min_score`, in no particular order."""
        try:
            result: Any = self._ocr(_model_input(_bounded_size(image, self.max_side)))
        except Exception as exc:
            # onnxruntime reports an allocation refused (RLIMIT_AS) as its own
            # RuntimeException with std::bad_alloc in the message; callers treat
            # memory as a limit, not as a crash to retry.
            if "bad_alloc" in str(exc):
                # rapidocr wraps the error with a whole traceback; keep its last line.
                last = str(exc).strip().splitlines()[-1][:300]
                raise MemoryError(f"OCR ran out of memory: {last}") from exc
            raise
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or ()
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            return []
        found: list[TextBox] = []
        for text, score, points in zip(texts, scores, boxes, strict=False):
            cleaned = " ".join(str(text).split())
            if not cleaned or float(score) < self.min_score:
                continue
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            found.append(TextBox(cleaned, float(score), min(xs), min(ys), max(xs), max(ys)))
        return found

    def read_lines(self, image: Image.Image) -> list[str]:
        """The text of `image` as lines in reading order: top to bottom, and left to
        right within a line (boxes that overlap vertically form one line)."""
        return reading_order(self.read_boxes(image))


def reading_order(boxes: list[TextBox]) -> list[str]:
    """Groups boxes into lines by vertical overlap and orders them for reading."""
    lines: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.top + b.bottom) / 2):
        line = lines[-1] if lines else None
        if line is not None and _overlaps(line, box):
            line.append(box)
        else:
            lines.append([box])
    ordered = sorted(lines, key=lambda line: min(b.top for b in line))
    return [" ".join(b.text for b in sorted(line, key=lambda b: b.left)) for line in ordered]


def _overlaps(line: list[TextBox], box: TextBox) -> bool:
    top = min(b.top for b in line)
    bottom = max(b.bottom for b in line)
    shared = min(bottom, box.bottom) - max(top, box.top)
    shortest = min([b.height for b in line] + [box.height])
    return shared >= _SAME_LINE_OVERLAP * shortest


def _bounded_size(image: Image.Image, max_side: int) -> Image.Image:
    """At most `max_side` (rounded down to a multiple of 32) on the longest side.
    rapidocr would scale it too, but doing it here spares its full-size array copies,
    and sizes near its own bound fail: a 2000x2000 or 2016x2016 page gave no text where
    1984x1984 and 2400x2400 read it (rapidocr 3.10.0)."""
    target = max(32, max_side // 32 * 32)
    if max(image.size) <= target:
        return image
    scale = target / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _model_input(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency: rapidocr flattens RGBA onto a white
    or black background, whichever contrasts with the opaque pixels, so white sticker
    text on a transparent background stays readable."""
    if image.mode in {"RGB", "RGBA"}:
        return image
    if image.mode in {"LA", "PA"} or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")
