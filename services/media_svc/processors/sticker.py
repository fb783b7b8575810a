"""Stickers: static and animated WebP (and PNG), marked as stickers, with the text OCR
reads on the first and the middle frame, deduplicated.

`[Sticker] Text in the sticker: "GOOD MORNING"`, `[Animated sticker, 12 frames]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    option_number,
    reject_unknown_options,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)
from services.media_svc.processors.image import OCR_OPTIONS, OcrOptions, quoted_text

if TYPE_CHECKING:
    from services.media_svc.engines.ocr import OcrEngine

DEFAULT_MAX_FRAMES = 1000


@dataclass(frozen=True, slots=True)
class StickerOptions:
    limits: ProcessorLimits
    ocr: OcrOptions
    # Animated stickers declaring more frames are refused (too_large).
    max_frames: int = DEFAULT_MAX_FRAMES


def unique_lines(frames: list[list[str]]) -> list[str]:
    """The lines of every frame in order, each distinct line once (compared without
    case and spacing, since OCR of a moving frame varies in both)."""
    seen: set[str] = set()
    merged: list[str] = []
    for lines in frames:
        for line in lines:
            key = "".join(line.split()).casefold()
            if key and key not in seen:
                seen.add(key)
                merged.append(line)
    return merged


class StickerProcessor(BlockingProcessor[StickerOptions, "OcrEngine"]):
    """Options: the limits, `ocr_threads`, `ocr_min_score`, `max_frames` (default 1000)."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> StickerOptions:
        reject_unknown_options(
            options, set(OCR_OPTIONS | ProcessorLimits.KEYS | {"max_frames"}), "sticker"
        )
        return StickerOptions(
            limits=ProcessorLimits.from_options(options),
            ocr=OcrOptions.from_options(options),
            max_frames=int(option_number(options, "max_frames", DEFAULT_MAX_FRAMES, 1)),
        )

    @classmethod
    def load_engine(cls, options: StickerOptions) -> OcrEngine:
        return options.ocr.load()

    @classmethod
    def process(
        cls, engine: OcrEngine, options: StickerOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines.imaging import (  # noqa: PLC0415 - worker only
            corrupt,
            decode_image,
            read_text,
        )

        if item.path is None:
            return corrupt("sticker", "no staged file")
        decoded = decode_image(
            item.path,
            options.limits,
            "sticker",
            frames="first_and_middle",
            max_frames=options.max_frames,
        )
        if isinstance(decoded, ProcessingFailure):
            return decoded
        if decoded.frame_count is None:
            head = "[Animated sticker]"
        elif decoded.animated:
            head = f"[Animated sticker, {decoded.frame_count:,} frames]"
        else:
            head = "[Sticker]"
        read: list[list[str]] = []
        for frame in decoded.frames:
            frame_lines = read_text(engine, frame, "sticker")
            if isinstance(frame_lines, ProcessingFailure):
                return frame_lines
            read.append(frame_lines)
        lines = unique_lines(read)
        if not lines:
            return ProcessingSuccess(head)
        budget = options.limits.max_output_chars - len(head) - len(' Text in the sticker: ""')
        return ProcessingSuccess(f"{head} {quoted_text(lines, budget, 'sticker')}")
