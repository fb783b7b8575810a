"""Images: format, dimensions and the text OCR finds, in reading order; optionally a
description from an operator's vision endpoint (see `describer`).

`[Image: JPEG 1024x768] Text in the image: "…"`, `[Image: PNG 800x600, no text found]`
(with a multiplication sign).
Pillow and the OCR engine are imported in the worker process only (`load_engine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.errors import InvalidInputError
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
from services.media_svc.processors.describer import OPTIONS as DESCRIBER_OPTIONS
from services.media_svc.processors.describer import DescriberSettings, describe

if TYPE_CHECKING:
    from services.media_svc.engines.ocr import OcrEngine

OCR_OPTIONS = frozenset({"ocr_threads", "ocr_min_score", "ocr_max_side"})


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """`ocr_threads`: onnxruntime threads per worker process (0: one per core; default
    1, since a pool runs one process per concurrent job). `ocr_min_score`: recognitions
    below this confidence are dropped (default 0.6). `ocr_max_side`: longest side the
    models see, larger images are scaled down (default 2000; memory follows it: ~0.55 GB
    resident per worker for 1024x768, ~1.1 GB at 2000 px)."""

    threads: int = 1
    min_score: float = 0.6
    max_side: int = 2000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> OcrOptions:
        threads = option_number(options, "ocr_threads", 1, 0)
        if threads != int(threads):
            raise InvalidInputError(f"options.ocr_threads: must be a whole number, got {threads}")
        min_score = option_number(options, "ocr_min_score", 0.6, 0)
        if min_score > 1:
            raise InvalidInputError(f"options.ocr_min_score: must be at most 1, got {min_score}")
        max_side = option_number(options, "ocr_max_side", 2000, 320)
        return cls(threads=int(threads), min_score=min_score, max_side=int(max_side))

    def load(self) -> OcrEngine:
        from services.media_svc.engines.ocr import OcrEngine  # noqa: PLC0415 - worker only

        return OcrEngine.load(
            threads=self.threads, min_score=self.min_score, max_side=self.max_side
        )


@dataclass(frozen=True, slots=True)
class ImageOptions:
    limits: ProcessorLimits
    ocr: OcrOptions
    describer: DescriberSettings | None = None


def quoted_text(lines: list[str], budget: int, label: str = "image") -> str:
    """`Text in the {label}: "…"`, the lines joined by newlines, cut to `budget`
    characters with the marker after the closing quote."""
    text = "\n".join(lines)
    budget = max(budget, 1)
    if len(text) <= budget:
        return f'Text in the {label}: "{text}"'
    left_out = len(text) - budget
    return (
        f'Text in the {label}: "{text[:budget].rstrip()}" […{left_out:,} more characters not shown]'
    )


class ImageProcessor(BlockingProcessor[ImageOptions, "OcrEngine"]):
    """Options: the limits, `ocr_threads`, `ocr_min_score`, and the describer hook
    (`describer_url`, `describer_model`, `describer_api_key_env`,
    `describer_timeout_seconds`; off unless `describer_url` is set)."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> ImageOptions:
        reject_unknown_options(
            options, set(OCR_OPTIONS | DESCRIBER_OPTIONS | ProcessorLimits.KEYS), "image"
        )
        return ImageOptions(
            limits=ProcessorLimits.from_options(options),
            ocr=OcrOptions.from_options(options),
            describer=DescriberSettings.from_options(options),
        )

    @classmethod
    def load_engine(cls, options: ImageOptions) -> OcrEngine:
        return options.ocr.load()

    @classmethod
    def process(
        cls, engine: OcrEngine, options: ImageOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines.imaging import (  # noqa: PLC0415 - worker only
            corrupt,
            decode_image,
            dimensions,
            jpeg_data_uri,
            read_text,
        )

        if item.path is None:
            return corrupt("image", "no staged file")
        decoded = decode_image(item.path, options.limits, "image")
        if isinstance(decoded, ProcessingFailure):
            return decoded
        image = decoded.frames[0]
        facts = f"{decoded.format} {dimensions(decoded.width, decoded.height)}"
        if decoded.animated:
            facts += ", animated"
        description = None
        if options.describer is not None:
            description = describe(options.describer, jpeg_data_uri(image))
        lines = read_text(engine, image, "image")
        if isinstance(lines, ProcessingFailure):
            return lines
        head = f"[Image: {facts}]" if lines else f"[Image: {facts}, no text found]"
        parts = [head]
        if description:
            parts.append(f"Description: {description}")
        if lines:
            # The bound covers the whole block; the cut marker may add ~40 characters.
            used = sum(len(part) + 1 for part in parts) + len('Text in the image: ""')
            parts.append(quoted_text(lines, options.limits.max_output_chars - used))
        return ProcessingSuccess(" ".join(parts))
